"""The quality report: classified streams, poor streams and rates over a window, the worst
keys of one dimension, and a daily series, computed by DuckDB over the streams Parquet files.

Streams are re-classified here with the chosen rule set (rules.classification_sql), so a
report under ``classic`` needs no rebuild. A stream is attributed to its segment's caller for
the user, subnet, building and platform dimensions. Rates are over classified streams only:
unclassified ones (no metric reported) are counted, and left out of every rate, as CQD does.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import duckdb

from callrecords.analytics.buildings import BuildingMap
from shared.analytics.rules import (
    AUDIO_POOR_RATE_TARGET,
    RULE_SETS,
    RuleSetName,
    StreamKind,
    classification_sql,
)

TOP = 10
UNKNOWN = "(unknown)"
NOT_IN_BUILDING_FILE = "(not in building file)"


class Dimension(StrEnum):
    USER = "user"
    SUBNET = "subnet"
    BUILDING = "building"
    PLATFORM = "platform"
    DAY = "day"


class NoTables(LookupError):
    """No streams table for any day of the window."""


@dataclass
class Group:
    key: str
    streams: int  # classified streams
    poor: int
    poor_rate: float | None
    label: str | None = None  # e.g. the user's display name


@dataclass
class KindSummary:
    kind: str
    streams: int
    classified: int
    poor: int
    poor_rate: float | None


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

    @property
    def audio(self) -> KindSummary | None:
        return next((k for k in self.kinds if k.kind == StreamKind.AUDIO), None)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: streams, classified, poor, poor_rate, by[{key, streams, poor,
        poor_rate}] first, then the details."""
        audio = self.audio
        return {
            "streams": self.streams,
            "classified": self.classified,
            "poor": self.poor,
            "poor_rate": self.poor_rate,
            "by": [
                {"key": g.key, "streams": g.streams, "poor": g.poor, "poor_rate": g.poor_rate}
                | ({"label": g.label} if g.label else {})
                for g in self.by
            ],
            "dimension": self.dimension,
            "rules": self.rules,
            "since": self.since.astimezone(UTC).isoformat(),
            "until": self.until.astimezone(UTC).isoformat(),
            "audio_poor_rate": audio.poor_rate if audio else None,
            "audio_poor_rate_target": AUDIO_POOR_RATE_TARGET,
            "kinds": [asdict(k) for k in self.kinds],
            "daily": [
                {"day": g.key, "streams": g.streams, "poor": g.poor, "poor_rate": g.poor_rate}
                for g in self.daily
            ],
        }


def _rate(poor: int, classified: int) -> float | None:
    return poor / classified if classified else None


def stream_files(directory: Path, since: datetime, until: datetime) -> list[Path]:
    """The streams files of the days [since, until) touches, from a Hive-partitioned copy."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    found: list[Path] = []
    for path in sorted(directory.glob("streams/date=*/*.parquet")):
        m = re.match(r"^date=(\d{4}-\d{2}-\d{2})$", path.parent.name)
        if m and first.isoformat() <= m.group(1) <= last.isoformat():
            found.append(path)
    return found


def _key_sql(dimension: Dimension) -> str:
    return {
        Dimension.USER: "caller_user_id",
        Dimension.SUBNET: "caller_subnet",
        Dimension.PLATFORM: "caller_platform",
        Dimension.DAY: "strftime(segment_start, '%Y-%m-%d')",
        Dimension.BUILDING: "building",
    }[dimension]


def quality_report(
    directory: Path,
    since: datetime,
    until: datetime,
    rules: RuleSetName = RuleSetName.CQD,
    by: Dimension = Dimension.USER,
    buildings: BuildingMap | None = None,
    top: int = TOP,
) -> QualityReport:
    """The report over the streams files under ``directory`` (``streams/date=.../*.parquet``)."""
    if by is Dimension.BUILDING and buildings is None:
        raise ValueError("--by building needs a building file (--buildings FILE.csv)")
    files = stream_files(directory, since, until)
    if not files:
        raise NoTables(
            f"no streams tables under {directory} for "
            f"{since.astimezone(UTC):%Y-%m-%d}..{until.astimezone(UTC):%Y-%m-%d}"
        )
    report = QualityReport(since, until, rules.value, by.value, days_with_tables=len(files))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # Every fragment put into SQL text below comes from code (the rule tables, enums,
        # datetimes), never from user input; file names and keys go in as parameters/relations.
        raw = con.read_parquet([str(p) for p in files], hive_partitioning=True, union_by_name=True)
        raw.create_view("raw_streams")
        cls = classification_sql(RULE_SETS[rules])
        start, end = (t.astimezone(UTC).isoformat() for t in (since, until))
        con.execute(
            f"CREATE TEMP VIEW s AS SELECT *, {cls} AS cls FROM raw_streams "  # noqa: S608
            f"WHERE segment_start >= TIMESTAMPTZ '{start}' AND segment_start < TIMESTAMPTZ '{end}'"
        )
        if by is Dimension.BUILDING:
            assert buildings is not None
            addresses = con.execute(
                "SELECT DISTINCT COALESCE(caller_subnet, caller_ip_address) FROM s "
                "WHERE COALESCE(caller_subnet, caller_ip_address) IS NOT NULL"
            ).fetchall()
            con.execute("CREATE TEMP TABLE building_of (address VARCHAR, building VARCHAR)")
            mapped = [(a, buildings.building_of(a)) for (a,) in addresses]
            if mapped:
                con.executemany("INSERT INTO building_of VALUES (?, ?)", mapped)
            con.execute(
                "CREATE TEMP VIEW sb AS SELECT s.*, b.building FROM s LEFT JOIN building_of b "
                "ON b.address = COALESCE(s.caller_subnet, s.caller_ip_address)"
            )
        kinds = con.execute(
            "SELECT stream_kind, count(*), count(*) FILTER (WHERE cls <> 'unclassified'), "
            "count(*) FILTER (WHERE cls = 'poor') FROM s GROUP BY stream_kind ORDER BY stream_kind"
        ).fetchall()
        for kind, streams, classified, poor in kinds:
            report.kinds.append(
                KindSummary(str(kind), streams, classified, poor, _rate(poor, classified))
            )
        report.streams = sum(k.streams for k in report.kinds)
        report.classified = sum(k.classified for k in report.kinds)
        report.poor = sum(k.poor for k in report.kinds)
        report.poor_rate = _rate(report.poor, report.classified)

        view = "sb" if by is Dimension.BUILDING else "s"
        label = "any_value(caller_display_name)" if by is Dimension.USER else "NULL"
        missing = NOT_IN_BUILDING_FILE if by is Dimension.BUILDING else UNKNOWN
        rows = con.execute(
            f"SELECT COALESCE({_key_sql(by)}, ?) AS k, {label}, "  # noqa: S608
            "count(*) AS n, count(*) FILTER (WHERE cls = 'poor') AS p "
            f"FROM {view} WHERE cls <> 'unclassified' GROUP BY k "
            "ORDER BY p DESC, p / n DESC, n DESC, k LIMIT ?",
            [missing, top],
        ).fetchall()
        report.by = [Group(str(k), n, p, _rate(p, n), lbl) for k, lbl, n, p in rows]

        for kinds_of, target in ((None, report.daily), (StreamKind.AUDIO, report.daily_audio)):
            daily = con.execute(
                "SELECT strftime(segment_start, '%Y-%m-%d') AS d, count(*), "
                "count(*) FILTER (WHERE cls = 'poor') FROM s "
                "WHERE cls <> 'unclassified' AND (? IS NULL OR stream_kind = ?) "
                "GROUP BY d ORDER BY d",
                [kinds_of, kinds_of],
            ).fetchall()
            target.extend(Group(str(d), n, p, _rate(p, n)) for d, n, p in daily)
    finally:
        con.close()
    return report


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


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
    out.append("")
    if not report.by:
        out.append(f"No classified streams to rank by {report.dimension}.")
        return "\n".join(out)
    out.append(f"Worst {len(report.by)} by {report.dimension} (classified streams):")
    width = max(len(g.key) + (len(g.label) + 3 if g.label else 0) for g in report.by)
    width = min(max(width, len(report.dimension)), 70)
    out.append(f"  {report.dimension:<{width}}  {'streams':>8}  {'poor':>6}  {'rate':>6}")
    for g in report.by:
        name = f"{g.label} ({g.key})" if g.label else g.key
        out.append(
            f"  {name[:width]:<{width}}  {g.streams:>8,}  {g.poor:>6,}  {_pct(g.poor_rate):>6}"
        )
    return "\n".join(out)
