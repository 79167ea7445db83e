"""``callrecords usage …``: backfill the PSTN / Direct Routing logs by hand, and the
report; callrecords/cli.py wires these in."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from callrecords.usage.tables import UsageTables, report
from shared.messages import utcnow
from shared.runtime import Runtime
from shared.usage.kinds import UsageKind, kinds_from_text
from shared.usage.ranges import MAX_RANGE, windows
from shared.usage.sync import KindReport, copy_range


class UsageCommandError(Exception):
    """A mistake found after parsing (e.g. an empty range): one line on stderr, exit 1."""


class Progress:
    """A text bar on a terminal; otherwise one line per finished window."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.drawn = False
        self.windows_seen = 0

    def update(self, rep: KindReport) -> None:
        counts = f"listed {rep.listed}, written {rep.written}, already archived {rep.archived}"
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.1 and rep.fraction < 1.0:
                return
            self.last_draw = now
            filled = round(rep.fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            percent = int(rep.fraction * 100)
            self.stream.write(f"\r{rep.kind.label:<15} [{bar}] {percent:3d}%  {counts}")
            self.stream.flush()
            self.drawn = True
        elif rep.done_until is not None and rep.windows != self.windows_seen:
            self.windows_seen = rep.windows
            print(
                f"{rep.kind.label}: up to {rep.done_until:%Y-%m-%d %H:%M} UTC "
                f"({int(rep.fraction * 100)}%): {counts}",
                file=self.stream,
                flush=True,
            )

    def end(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False
        self.windows_seen = 0


def _range(args: argparse.Namespace) -> tuple[datetime, datetime]:
    now = utcnow()
    until: datetime = min(args.until or now, now)
    since: datetime = args.since
    if since >= until:
        raise UsageCommandError(
            f"empty range: {since:%Y-%m-%d %H:%M} is not before {until:%Y-%m-%d %H:%M} UTC"
        )
    return since, until


async def cmd_usage_backfill(rt: Runtime, args: argparse.Namespace) -> int:
    since, until = _range(args)
    kinds = kinds_from_text(args.kind)
    note = " (dry run: nothing is written)" if args.dry_run else ""
    print(
        f"usage backfill {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC, "
        f"{len(list(windows(since, until)))} window(s) of up to 90 days{note}",
        file=sys.stderr,
    )
    bar = Progress(sys.stderr)
    failed = False
    for kind in kinds:
        try:
            rep = await copy_range(
                rt,
                kind,
                since,
                until,
                step=MAX_RANGE,
                progress=bar.update,
                dry_run=args.dry_run,
                wait_long_throttles=True,
            )
        finally:
            bar.end()
        print(rep.summary())
        failed = failed or rep.stopped is not None
    return 1 if failed else 0


def _table(rows: list[dict[str, Any]], columns: list[str], out: IO[str]) -> None:
    if not rows:
        print("  (none)", file=out)
        return
    widths = {c: max(len(c), *(len(_cell(r[c])) for r in rows)) for c in columns}
    print("  " + "  ".join(c.ljust(widths[c]) for c in columns), file=out)
    for row in rows:
        print("  " + "  ".join(_cell(row[c]).ljust(widths[c]) for c in columns).rstrip(), file=out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


async def cmd_usage_report(rt: Runtime, args: argparse.Namespace) -> int:
    since, until = _range(args)
    kinds = list(UsageKind)
    tables = UsageTables(rt)

    def show(kind: UsageKind, day: date) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rtables: {kind.table} {day:%Y-%m-%d}   ")
            sys.stderr.flush()

    refreshed = await tables.refresh(kinds, since, until, progress=show)
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 50 + "\r")
    print(
        f"tables: {refreshed.rebuilt} day partition(s) rebuilt from the archive "
        f"(container {rt.settings.analytics_container})",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="usage-report-") as tmp:
        folders = await tables.download(kinds, since, until, Path(tmp))
        result = report(folders, since, until)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    out = sys.stdout
    pstn, dr = result["pstn"], result["direct_routing"]
    print(f"Usage {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M} UTC", file=out)
    print(f"\nPSTN: {pstn['calls']} calls, {pstn['minutes']:.2f} min", file=out)
    _table(pstn["by_currency"], ["currency", "calls", "minutes", "charges"], out)
    print("\nPSTN by user and destination", file=out)
    _table(
        pstn["by_user_destination"],
        ["user", "destination", "calls", "minutes", "charges", "currency"],
        out,
    )
    print(
        f"\nDirect Routing: {dr['calls']} calls, {dr['failed']} failed, {dr['minutes']:.2f} min",
        file=out,
    )
    _table(dr["by_user"], ["user", "calls", "failed", "minutes"], out)
    print("\nFailed Direct Routing calls by SIP code", file=out)
    _table(dr["failures_by_sip_code"], ["sip_code", "phrase", "calls"], out)
    return 0


def add_parser(sub: Any, when: Callable[[str], datetime]) -> None:
    """Add ``usage backfill`` and ``usage report`` to cli.py's subcommands."""
    usage = sub.add_parser(
        "usage",
        help="PSTN and Direct Routing call logs: backfill, report",
        description="The PSTN and Direct Routing call logs Graph keeps by date range "
        "(getPstnCalls, getDirectRoutingCalls), archived one row a blob under pstn/ and "
        "directrouting/. The hourly sync_usage_logs timer keeps them current.",
    )
    actions = usage.add_subparsers(dest="usage_action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "backfill",
        help="archive the rows of a range now",
        description="Read the logs over the range in windows of up to 90 days (Graph's limit) "
        "and archive each row not archived yet. Safe to repeat: a row is never written twice. "
        "Prints a summary line per log: rows listed, written, already archived. "
        "Exit 1 if a log could not be read to the end.",
    )
    p.add_argument("--since", type=when, required=True, help="90d, 36h, 90m (ago) or an ISO date")
    p.add_argument("--until", type=when, default=None, help="same forms; default: now")
    p.add_argument(
        "--kind", choices=("pstn", "directrouting", "all"), default="all", help="default: all"
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be written")
    p.set_defaults(handler=cmd_usage_backfill)

    p = actions.add_parser(
        "report",
        help="minutes and charges by user and destination; failures by SIP code",
        description="Bring the pstn_calls and direct_routing_calls Parquet tables up to date "
        "with the archive for the range (only days whose row count changed are rebuilt), then "
        "summarise with DuckDB: PSTN minutes and charges by user and destination, Direct "
        "Routing minutes and failures by user, failed Direct Routing calls by SIP code.",
    )
    p.add_argument("--since", type=when, default="30d", help="30d (default), 36h, or an ISO date")
    p.add_argument("--until", type=when, default=None, help="default: now")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_usage_report)
