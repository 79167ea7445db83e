"""The quality report: classified streams, poor streams and rates over a window, CQD's
reliability (setup and drop failure rates), "poor due to" counts, one dimension's rows with the
QER guide's targets met or missed, a daily series, and the missing-subnet list.

The SQL is generated (queries.py) and runs on any engine that can answer a query with rows:
compute() takes that as a function, quality_report() gives it DuckDB over the Parquet files,
the Spark test gives it Spark. Streams are re-classified with the chosen rule set, so a report
under ``classic`` needs no rebuild. A stream and a segment are attributed to the segment's
caller for the user, subnet, building and network dimensions. Poor rates are over classified
streams only: unclassified ones (no metric reported) are counted and left out, as CQD does.

Reliability (learn.microsoft.com/microsoftteams/quality-of-experience-review-guide, "Setup
Failure Rate", "Drop Failure Rate"), counted per segment: setup failure rate = segments that
failed to set up / segments; drop failure rate = segments that dropped / segments that set up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from callrecords.analytics.buildings import BuildingMap
from callrecords.analytics.queries import (
    BUILDING_COLUMNS,
    NOT_IN_BUILDING_FILE,
    UNKNOWN,
    Dimension,
    addresses_sql,
    by_sql,
    daily_sql,
    kinds_sql,
    missing_subnets_sql,
    poor_due_to_sql_all,
    reliability_sql,
    view_statements,
)
from shared.analytics.rules import (
    AUDIO_POOR_RATE_TARGET,
    QER_PAGE,
    RULE_SETS,
    TARGETS_INSIDE,
    TARGETS_OVERALL,
    Dialect,
    Measure,
    RuleSetName,
    StreamKind,
    Targets,
    reasons,
)
from shared.analytics.tables import SEGMENTS

TOP = 10
__all__ = ["NOT_IN_BUILDING_FILE", "UNKNOWN", "Dimension", "NoTables", "quality_report"]

Rows = Sequence[Sequence[Any]]
Run = Callable[[str], Rows]


class NoTables(LookupError):
    """No streams table for any day of the window."""


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Reliability:
    segments: int = 0
    setup_failures: int = 0
    drops: int = 0

    @property
    def set_up(self) -> int:
        return self.segments - self.setup_failures

    @property
    def setup_failure_rate(self) -> float | None:
        return _rate(self.setup_failures, self.segments)

    @property
    def drop_failure_rate(self) -> float | None:
        return _rate(self.drops, self.set_up)

    def as_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "setup_failures": self.setup_failures,
            "set_up": self.set_up,
            "drops": self.drops,
            "setup_failure_rate": self.setup_failure_rate,
            "drop_failure_rate": self.drop_failure_rate,
        }


def _verdicts(targets: Targets, rates: dict[Measure, float | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for measure, rate in rates.items():
        out[f"{measure.value}_target"] = targets.of(measure)
        out[f"{measure.value}_met"] = targets.met(measure, rate)
    return out


@dataclass
class Group:
    key: str
    streams: int  # classified streams, every kind
    poor: int
    poor_rate: float | None
    label: str | None = None  # e.g. the user's display name
    audio_streams: int = 0  # classified audio streams
    audio_poor: int = 0
    reliability: Reliability = field(default_factory=Reliability)
    inside: bool = False  # every stream and segment of the row is inside the corporate network
    poor_due_to: dict[str, int] = field(default_factory=dict[str, int])

    @property
    def audio_poor_rate(self) -> float | None:
        return _rate(self.audio_poor, self.audio_streams)

    @property
    def targets(self) -> Targets:
        return TARGETS_INSIDE if self.inside else TARGETS_OVERALL

    def verdicts(self) -> dict[str, Any]:
        return _verdicts(
            self.targets,
            {
                Measure.POOR: self.audio_poor_rate,
                Measure.SETUP: self.reliability.setup_failure_rate,
                Measure.DROP: self.reliability.drop_failure_rate,
            },
        )

    def as_dict(self) -> dict[str, Any]:
        return (
            {"key": self.key, "streams": self.streams, "poor": self.poor}
            | {"poor_rate": self.poor_rate}
            | ({"label": self.label} if self.label else {})
            | {
                "audio_streams": self.audio_streams,
                "audio_poor": self.audio_poor,
                "audio_poor_rate": self.audio_poor_rate,
                **self.reliability.as_dict(),
                "targets": "inside" if self.inside else "overall",
                **self.verdicts(),
                "poor_due_to": self.poor_due_to,
            }
        )


@dataclass
class KindSummary:
    kind: str
    streams: int
    classified: int
    poor: int
    poor_rate: float | None


@dataclass
class MissingSubnet:
    subnet: str
    audio_streams: int


@dataclass
class QualityReport:
    since: datetime
    until: datetime
    rules: str
    dimension: str
    streams: int = 0
    classified: int = 0
    poor: int = 0
    poor_rate: float | None = None
    kinds: list[KindSummary] = field(default_factory=list[KindSummary])
    by: list[Group] = field(default_factory=list[Group])
    daily: list[Group] = field(default_factory=list[Group])  # key = YYYY-MM-DD, all kinds
    daily_audio: list[Group] = field(default_factory=list[Group])
    days_with_tables: int = 0
    reliability: Reliability = field(default_factory=Reliability)
    poor_due_to: dict[str, int] = field(default_factory=dict[str, int])
    by_reliability: bool = False  # rows ranked by failures (--reliability)
    missing_subnets: list[MissingSubnet] | None = None  # asked for with --missing-subnets

    @property
    def audio(self) -> KindSummary | None:
        return next((k for k in self.kinds if k.kind == StreamKind.AUDIO), None)

    def verdicts(self) -> dict[str, Any]:
        audio = self.audio
        return _verdicts(
            TARGETS_OVERALL,
            {
                Measure.POOR: audio.poor_rate if audio else None,
                Measure.SETUP: self.reliability.setup_failure_rate,
                Measure.DROP: self.reliability.drop_failure_rate,
            },
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: streams, classified, poor, poor_rate, by[...] first, then the
        details."""
        audio = self.audio
        out: dict[str, Any] = {
            "streams": self.streams,
            "classified": self.classified,
            "poor": self.poor,
            "poor_rate": self.poor_rate,
            "by": [g.as_dict() for g in self.by],
            "dimension": self.dimension,
            "rules": self.rules,
            "since": self.since.astimezone(UTC).isoformat(),
            "until": self.until.astimezone(UTC).isoformat(),
            "audio_poor_rate": audio.poor_rate if audio else None,
            "audio_poor_rate_target": AUDIO_POOR_RATE_TARGET,
            "reliability": self.reliability.as_dict() | self.verdicts(),
            "poor_due_to": self.poor_due_to,
            "targets_source": QER_PAGE,
            "kinds": [vars(k) for k in self.kinds],
            "daily": [
                {"day": g.key, "streams": g.streams, "poor": g.poor, "poor_rate": g.poor_rate}
                for g in self.daily
            ],
        }
        if self.missing_subnets is not None:
            out["missing_subnets"] = [
                {"subnet": m.subnet, "audio_streams": m.audio_streams} for m in self.missing_subnets
            ]
        return out


def table_files(directory: Path, table: str, since: datetime, until: datetime) -> list[Path]:
    """The files of ``table`` for the days [since, until) touches, from a Hive-partitioned
    copy."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    found: list[Path] = []
    for path in sorted(directory.glob(f"{table}/date=*/*.parquet")):
        m = re.match(r"^date=(\d{4}-\d{2}-\d{2})$", path.parent.name)
        if m and first.isoformat() <= m.group(1) <= last.isoformat():
            found.append(path)
    return found


def stream_files(directory: Path, since: datetime, until: datetime) -> list[Path]:
    return table_files(directory, "streams", since, until)


def building_rows(buildings: BuildingMap | None, addresses: list[str]) -> list[tuple[Any, ...]]:
    """building_of's rows: each address the building file maps, with its building's facts."""
    if buildings is None:
        return []
    rows: list[tuple[Any, ...]] = []
    for address in addresses:
        b = buildings.find(address)
        if b is not None:
            rows.append(
                (
                    address,
                    b.name,
                    b.network_name or None,
                    b.city or None,
                    b.country or None,
                    b.region or None,
                    b.inside_corp,
                    b.vpn,
                )
            )
    return rows


def _int(value: Any) -> int:
    return int(value or 0)


def compute(
    run: Run,
    dialect: Dialect,
    since: datetime,
    until: datetime,
    rules: RuleSetName = RuleSetName.CQD,
    by: Dimension = Dimension.USER,
    top: int = TOP,
    by_reliability: bool = False,
    missing_subnets: bool = False,
) -> QualityReport:
    """The report from an engine that has the views of queries.view_statements() ready."""
    rule_set = RULE_SETS[rules]
    names = reasons(rule_set)
    report = QualityReport(since, until, rules.value, by.value, by_reliability=by_reliability)
    for kind, streams, classified, poor in run(kinds_sql()):
        c, p = _int(classified), _int(poor)
        report.kinds.append(KindSummary(str(kind), _int(streams), c, p, _rate(p, c)))
    report.streams = sum(k.streams for k in report.kinds)
    report.classified = sum(k.classified for k in report.kinds)
    report.poor = sum(k.poor for k in report.kinds)
    report.poor_rate = _rate(report.poor, report.classified)
    (due,) = run(poor_due_to_sql_all(rule_set))
    report.poor_due_to = {name: _int(n) for name, n in zip(names, due, strict=True)}
    ((segments, setup, drops),) = run(reliability_sql())
    report.reliability = Reliability(_int(segments), _int(setup), _int(drops))

    for row in run(by_sql(dialect, rule_set, by, top, by_reliability)):
        values = dict(
            zip(
                [
                    "k",
                    "label",
                    "streams",
                    "poor",
                    "audio_streams",
                    "audio_poor",
                    "segments",
                    "setup_failures",
                    "drops",
                    "inside",
                    *(f"due_{n}" for n in names),
                ],
                row,
                strict=False,
            )
        )
        streams, poor = _int(values["streams"]), _int(values["poor"])
        report.by.append(
            Group(
                str(values["k"]),
                streams,
                poor,
                _rate(poor, streams),
                str(values["label"]) if values["label"] else None,
                _int(values["audio_streams"]),
                _int(values["audio_poor"]),
                Reliability(
                    _int(values["segments"]),
                    _int(values["setup_failures"]),
                    _int(values["drops"]),
                ),
                _int(values["inside"]) == 1,
                {n: _int(values[f"due_{n}"]) for n in names},
            )
        )
    for audio_only, target in ((False, report.daily), (True, report.daily_audio)):
        for d, n, p in run(daily_sql(dialect, audio_only)):
            target.append(Group(str(d), _int(n), _int(p), _rate(_int(p), _int(n))))
    if missing_subnets:
        report.missing_subnets = [
            MissingSubnet(str(subnet), _int(n)) for subnet, n in run(missing_subnets_sql())
        ]
    return report


def quality_report(
    directory: Path,
    since: datetime,
    until: datetime,
    rules: RuleSetName = RuleSetName.CQD,
    by: Dimension = Dimension.USER,
    buildings: BuildingMap | None = None,
    top: int = TOP,
    by_reliability: bool = False,
    missing_subnets: bool = False,
) -> QualityReport:
    """The report over the tables under ``directory`` (``streams/date=.../*.parquet``,
    ``segments/...``), with DuckDB."""
    if by.needs_buildings and buildings is None:
        raise ValueError(f"--by {by.value} needs a building file (--buildings FILE.csv)")
    if missing_subnets and buildings is None:
        raise ValueError("--missing-subnets needs a building file (--buildings FILE.csv)")
    files = stream_files(directory, since, until)
    if not files:
        raise NoTables(
            f"no streams tables under {directory} for "
            f"{since.astimezone(UTC):%Y-%m-%d}..{until.astimezone(UTC):%Y-%m-%d}"
        )
    segment_files = table_files(directory, "segments", since, until)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        raw = con.read_parquet([str(p) for p in files], hive_partitioning=True, union_by_name=True)
        raw.create_view("raw_streams")
        if segment_files:
            con.read_parquet(
                [str(p) for p in segment_files], hive_partitioning=True, union_by_name=True
            ).create_view("raw_segments")
        else:  # tables from before the segments table: no reliability figures, not an error
            empty = SEGMENTS.empty_table()
            con.register("raw_segments_empty", empty)
            con.execute("CREATE TEMP VIEW raw_segments AS SELECT * FROM raw_segments_empty")
        columns = ", ".join(f"{name} {kind}" for name, kind in BUILDING_COLUMNS)
        con.execute(f"CREATE TEMP TABLE building_of ({columns})")
        addresses = [
            str(a) for (a,) in con.execute(addresses_sql(Dialect.DUCKDB, since, until)).fetchall()
        ]
        mapped = building_rows(buildings, addresses)
        if mapped:
            marks = ", ".join("?" for _ in BUILDING_COLUMNS)
            con.executemany(f"INSERT INTO building_of VALUES ({marks})", mapped)  # noqa: S608
        for statement in view_statements(Dialect.DUCKDB, RULE_SETS[rules], since, until):
            con.execute(statement)

        def run(sql: str) -> Rows:
            return con.execute(sql).fetchall()

        report = compute(
            run, Dialect.DUCKDB, since, until, rules, by, top, by_reliability, missing_subnets
        )
    finally:
        con.close()
    report.days_with_tables = len(files)
    return report


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _mark(met: bool | None) -> str:
    return "" if met is None else ("ok" if met else "MISSED")


def format_text(report: QualityReport) -> str:
    """The report for a terminal."""
    out: list[str] = []
    out.append(
        f"Call quality {report.since.astimezone(UTC):%Y-%m-%d %H:%M} .. "
        f"{report.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC  (rules: {report.rules})"
    )
    unclassified = report.streams - report.classified
    out.append(f"  streams      {report.streams:>8,}")
    out.append(
        f"  classified   {report.classified:>8,}  ({unclassified:,} unclassified, left out of rates)"
    )
    out.append(f"  poor         {report.poor:>8,}")
    out.append(f"  poor rate    {_pct(report.poor_rate):>8}")
    audio = report.audio
    if audio is not None:
        verdict = (
            "no classified audio"
            if audio.poor_rate is None
            else ("within" if audio.poor_rate <= AUDIO_POOR_RATE_TARGET else "ABOVE")
        )
        out.append(
            f"  audio        {_pct(audio.poor_rate):>8}  poor of {audio.classified:,} classified; "
            f"Microsoft's target: <= {AUDIO_POOR_RATE_TARGET * 100:.0f}% ({verdict})"
        )
    for kind in report.kinds:
        if kind.kind != StreamKind.AUDIO:
            out.append(
                f"  {kind.kind:<12} {_pct(kind.poor_rate):>8}  poor of {kind.classified:,} classified"
            )
    r, verdicts = report.reliability, report.verdicts()
    out.append(
        f"  setup failed {_pct(r.setup_failure_rate):>8}  {r.setup_failures:,} of {r.segments:,} "
        f"segments; target <= {verdicts['setup_failure_rate_target'] * 100:.1f}% "
        f"{_mark(verdicts['setup_failure_rate_met'])}"
    )
    out.append(
        f"  dropped      {_pct(r.drop_failure_rate):>8}  {r.drops:,} of {r.set_up:,} set up; "
        f"target <= {verdicts['drop_failure_rate_target'] * 100:.1f}% "
        f"{_mark(verdicts['drop_failure_rate_met'])}"
    )
    due = ", ".join(f"{name} {n:,}" for name, n in report.poor_due_to.items() if n)
    out.append(f"  poor due to  {due or '-'}")
    if report.missing_subnets is not None:
        out.append("")
        out.append(
            f"Subnets with >= 10 audio streams not in the building file: "
            f"{len(report.missing_subnets)}"
        )
        out.extend(f"  {m.subnet:<40} {m.audio_streams:>8,}" for m in report.missing_subnets)
    out.append("")
    if not report.by:
        out.append(f"No streams or segments to show by {report.dimension}.")
        return "\n".join(out)
    dim = report.dimension
    title = "" if Dimension(dim).categorical else f"Worst {len(report.by)} "
    out.append(
        f"{title or 'Every row '}by {dim} (audio poor / setup failed / "
        "dropped, against the QER targets):"
    )
    width = max(len(g.key) + (len(g.label) + 3 if g.label else 0) for g in report.by)
    width = min(max(width, len(dim)), 60)
    out.append(
        f"  {dim:<{width}}  {'streams':>8}  {'poor':>6}  {'audio':>7}  {'setup':>7}  "
        f"{'drop':>7}  targets"
    )
    for g in report.by:
        name = f"{g.label} ({g.key})" if g.label else g.key
        v = g.verdicts()
        missed = [
            m
            for m in ("poor_rate", "setup_failure_rate", "drop_failure_rate")
            if v[f"{m}_met"] is False
        ]
        out.append(
            f"  {name[:width]:<{width}}  {g.streams:>8,}  {g.poor:>6,}  "
            f"{_pct(g.audio_poor_rate):>7}  {_pct(g.reliability.setup_failure_rate):>7}  "
            f"{_pct(g.reliability.drop_failure_rate):>7}  "
            f"{'inside' if g.inside else 'overall'}: "
            + ("missed " + ", ".join(m.replace("_rate", "") for m in missed) if missed else "met")
        )
    return "\n".join(out)
