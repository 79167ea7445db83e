"""``cli.py tabulate`` and ``cli.py quality``: what they do, with plain values in and text out
(cli.py only parses arguments and prints)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO

import orjson

from callrecords.analytics.buildings import load_buildings
from callrecords.analytics.cache import fetch_tables
from callrecords.analytics.html import render
from callrecords.analytics.queries import (
    by_sql,
    daily_sql,
    kinds_sql,
    kusto_external_table,
    missing_subnets_sql,
    poor_due_to_sql_all,
    reliability_sql,
    view_statements,
)
from callrecords.analytics.report import Dimension, format_text, quality_report
from shared.analytics.rebuild import Progress, tabulate
from shared.analytics.rules import RULE_SETS, Dialect, RuleSetName, kql_functions
from shared.analytics.tables import SEGMENTS, STREAMS
from shared.clock import utc_days
from shared.runtime import Runtime


class ProgressBar:
    """A one-line bar on a terminal (records read of the window's); otherwise one plain line
    per finished day, so a log file stays readable."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.days_reported = 0
        self.drawn = False

    def update(self, state: Progress) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.1 and state.fraction < 1.0:
                return
            self.last_draw = now
            filled = round(state.fraction * self.WIDTH)
            self.stream.write(
                f"\rtabulate [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{int(state.fraction * 100):3d}%  records {state.records_done:,}/"
                f"{state.records:,}, days {state.days_done}/{state.days}"
            )
            self.stream.flush()
            self.drawn = True
            return
        while self.days_reported < len(state.results):
            r = state.results[self.days_reported]
            self.days_reported += 1
            print(
                f"tabulate: {r.day} done ({int(state.fraction * 100)}%): {r.records:,} records, "
                f"{r.streams:,} streams",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


async def run_tabulate(rt: Runtime, since: datetime, until: datetime, err: IO[str]) -> list[str]:
    """Rebuild every day [since, until) touches; the summary lines to print."""
    days = utc_days(since, until)
    bar = ProgressBar(err)
    started = time.perf_counter()
    try:
        state = await tabulate(rt.archive.container, rt.tables, days, progress=bar.update)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    results = state.results
    total = {
        name: sum(r.bytes.get(name, 0) for r in results)
        for name in ("calls", "streams", "segments", "participants")
    }
    lines = [
        f"{days[0]} .. {days[-1]}: {len(days)} day(s), "
        f"{sum(r.records for r in results):,} records (latest versions) -> "
        f"{sum(r.calls for r in results):,} calls, {sum(r.streams for r in results):,} streams, "
        f"{sum(r.segments for r in results):,} segments, "
        f"{sum(r.participants for r in results):,} participants in {seconds:.1f} s",
        f"container {rt.settings.analytics_container}: "
        + ", ".join(f"{name}/ {size / 1024:,.0f} KiB" for name, size in total.items()),
    ]
    skipped = sum(r.skipped for r in results)
    if skipped:
        lines.append(
            f"{skipped} archived blob(s) left out: gone since the listing, in the Archive tier, "
            "or not a record (each is named above)"
        )
    empty = [str(d) for d in days if d not in {r.day for r in results if r.records}]
    if empty:
        lines.append(f"no records archived on {', '.join(empty)}")
    return lines


class SqlDialect(StrEnum):
    """What --sql prints: the report's queries for a SQL engine, or Data Explorer functions."""

    DUCKDB = "duckdb"
    SPARK = "spark"
    KQL = "kql"


@dataclass
class QualityOptions:
    since: datetime
    until: datetime
    by: Dimension
    rules: RuleSetName
    buildings: Path | None
    json: bool
    html: Path | None
    tables: Path | None  # a local copy: no storage access at all
    cache: Path  # where the tables are fetched to otherwise
    reliability: bool = False
    missing_subnets: bool = False
    sql: str | None = None  # a SqlDialect: print the queries instead of running them


def report_sql(opts: QualityOptions) -> str:
    """The report's statements as one script, for the engine named in ``opts.sql``."""
    rules = RULE_SETS[opts.rules]
    if opts.sql == SqlDialect.KQL:
        return "\n".join(
            [
                kusto_external_table("CallStreams", "streams", STREAMS),
                kusto_external_table("CallSegments", "segments", SEGMENTS),
                kql_functions(rules),
            ]
        )
    dialect = Dialect(opts.sql)
    top = 10
    statements = [
        "-- inputs: raw_streams, raw_segments (the Parquet tables) and building_of "
        "(address, building, network_name, city, country, region, inside_corp, vpn)",
        *view_statements(dialect, rules, opts.since, opts.until),
        "-- streams, classified and poor per kind",
        kinds_sql(),
        "-- poor streams per reason (CQD's poor due to)",
        poor_due_to_sql_all(rules),
        "-- segments, setup failures, drops",
        reliability_sql(),
        f"-- by {opts.by.value}",
        by_sql(dialect, rules, opts.by, top, opts.reliability),
        "-- poor rate per day, all kinds and audio",
        daily_sql(dialect, False),
        daily_sql(dialect, True),
        "-- subnets with 10 or more audio streams the building file does not map",
        missing_subnets_sql(),
    ]
    return "\n".join(s if s.startswith("--") else s + ";" for s in statements) + "\n"


async def run_quality(rt: Runtime | None, opts: QualityOptions, out: IO[str], err: IO[str]) -> int:
    """Print the report (text or JSON) and write the page; raises ValueError / LookupError /
    BuildingFileError with a one-line message for the CLI to print."""
    if opts.sql:
        out.write(report_sql(opts))
        return 0
    buildings = load_buildings(opts.buildings) if opts.buildings else None
    if opts.by.needs_buildings and buildings is None:
        raise ValueError(f"--by {opts.by.value} needs a building file: --buildings FILE.csv")
    directory = opts.tables
    if directory is None:
        assert rt is not None
        directory = opts.cache
        days = utc_days(opts.since, opts.until)
        fetched = await fetch_tables(rt.tables, days, directory)
        more = await fetch_tables(rt.tables, days, directory, table="segments")
        print(
            f"tables: {fetched.days} of {len(days)} day(s) in {rt.settings.analytics_container}; "
            f"{fetched.downloaded + more.downloaded} fetched "
            f"({(fetched.bytes + more.bytes) / 1024:,.0f} KiB), "
            f"{fetched.cached + more.cached} from the cache in {directory}",
            file=err,
        )
    report = quality_report(
        directory,
        opts.since,
        opts.until,
        opts.rules,
        opts.by,
        buildings=buildings,
        by_reliability=opts.reliability,
        missing_subnets=opts.missing_subnets,
    )
    if opts.json:
        out.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_text(report), file=out)
    if opts.html:
        opts.html.write_text(render(report), encoding="utf-8")
        print(f"wrote {opts.html}", file=err if opts.json else out)
    return 0


def since_hint(since: datetime, until: datetime) -> str:
    days = max(1, (until - since + timedelta(hours=23)).days)
    return f"python cli.py tabulate --since {days}d"
