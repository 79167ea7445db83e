"""``callrecords usage …``: backfill the PSTN / Direct Routing logs by hand, the
report, and Direct Routing health per SBC; callrecords/cli.py wires these in."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from callrecords.arguments import add_outputs, add_range
from callrecords.usage.sbc_health import TOP_SIP_CODES, sbc_health
from callrecords.usage.sbc_page import render_health
from callrecords.usage.tables import UsageTables, report
from shared.clock import utcnow
from shared.runtime import Runtime
from shared.usage.kinds import UsageKind, kinds_from_text
from shared.usage.ranges import MAX_RANGE, date_ranges
from shared.usage.reread import MIN_REREAD
from shared.usage.sync import KindReport, copy_range
from shared.usage.watermark import WatermarkStore


class UsageCommandError(Exception):
    """A mistake found after parsing (e.g. an empty range): one line on stderr, exit 1."""


class Progress:
    """A text bar on a terminal; otherwise one line per finished range."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.drawn = False
        self.ranges_seen = 0

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
        elif rep.done_until is not None and rep.ranges != self.ranges_seen:
            self.ranges_seen = rep.ranges
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
        self.ranges_seen = 0


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
        f"{len(list(date_ranges(since, until)))} range(s) of up to 90 days{note}",
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
    print("  " + "  ".join(c.ljust(widths[c]) for c in columns).rstrip(), file=out)
    for row in rows:
        print("  " + "  ".join(_cell(row[c]).ljust(widths[c]) for c in columns).rstrip(), file=out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


async def _refresh(rt: Runtime, kinds: list[UsageKind], since: datetime, until: datetime) -> None:
    """Bring the range's tables up to date with the archive, saying how much was rebuilt."""
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


async def cmd_usage_report(rt: Runtime, args: argparse.Namespace) -> int:
    since, until = _range(args)
    kinds = list(UsageKind)
    tables = UsageTables(rt)
    await _refresh(rt, kinds, since, until)
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


def _health_text(result: dict[str, Any], out: IO[str]) -> None:
    print(f"Direct Routing health {result['since']} .. {result['until']}", file=out)
    sbcs: list[dict[str, Any]] = result["sbcs"]
    if not sbcs:
        print("  no Direct Routing calls in the range", file=out)
        return
    rows = [
        {
            **s,
            "sbc": f"{s['sbc']}{'~' if s['provisional'] else ''}",
            "ner": f"{s['ner']:.2f}{'*' if s['low_volume'] else ''}",
            "peak_at": s["peak_at"] or "-",
        }
        for s in sbcs
    ]
    columns = ["sbc", "attempts", "ner", "answered", "avg_duration_s", "short_calls_pct"]
    _table(rows, [*columns, "media_bypass_pct", "peak_concurrent", "peak_at"], out)
    print(
        f"  * fewer than {result['low_volume_below']} attempts: the NER may be low and still normal",
        file=out,
    )
    if any(s["provisional"] for s in sbcs):
        print(
            f"  ~ provisional: holds hours after {result['settled_before'][:16]} UTC, for which "
            "Graph may still publish rows (it publishes them up to 48 h late)",
            file=out,
        )
    for sbc in sbcs:
        print(f"\nTop final SIP codes, {sbc['sbc']}", file=out)
        codes = [
            {**c, "network_effective": "yes" if c["network_effective"] else "no"}
            for c in sbc["top_sip_codes"]
        ]
        _table(
            codes, ["sip_code", "sub_reason", "phrase", "calls", "pct", "network_effective"], out
        )
    print("\nPer day", file=out)
    days = [
        {
            **d,
            "day": d["day"][:10] + ("~" if d["provisional"] else ""),
            "ner": f"{d['ner']:.2f}{'*' if d['low_volume'] else ''}",
        }
        for d in result["days"]
    ]
    _table(
        days,
        ["sbc", "day", "attempts", "ner", "avg_duration_s", "short_calls_pct", "peak_concurrent"],
        out,
    )
    print("\n(per hour: --json or --html)", file=out)


async def _settled_before(rt: Runtime | None, kind: UsageKind) -> datetime:
    """Where rows stop appearing late: MIN_REREAD before now, or before the sync's watermark
    where the sync is behind (a local copy's watermark is not known; a range copied only by
    hand has none)."""
    read_up_to = utcnow()
    if rt is not None:
        mark = await WatermarkStore(rt).load(kind)
        if mark.until is not None:
            read_up_to = min(mark.until, read_up_to)
    return read_up_to - MIN_REREAD


async def cmd_usage_health(rt: Runtime | None, args: argparse.Namespace) -> int:
    since, until = _range(args)
    kind = UsageKind.DIRECT_ROUTING
    with tempfile.TemporaryDirectory(prefix="usage-health-") as tmp:
        if args.tables is not None:  # a local copy: no settings, no storage
            folder = args.tables / kind.table
            if not folder.is_dir():
                raise UsageCommandError(
                    f"no {kind.table}/ folder in {args.tables} (copy the analytics container's "
                    f"{kind.table}/date=…/ partitions there, or leave out --tables)"
                )
        else:
            assert rt is not None
            await _refresh(rt, [kind], since, until)
            folders = await UsageTables(rt).download([kind], since, until, Path(tmp))
            folder = folders[kind]
        settled = await _settled_before(rt, kind)
        result = sbc_health(folder, since, until, settled_before=settled, top=args.top)
    if args.html:
        args.html.write_text(render_health(result), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _health_text(result, sys.stdout)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def add_parser(sub: Any) -> None:
    """Add ``usage backfill``, ``usage report`` and ``usage health`` to the subcommands."""
    usage = sub.add_parser(
        "usage",
        help="PSTN and Direct Routing call logs: backfill, report, health",
        description="The PSTN and Direct Routing call logs Graph keeps by date range "
        "(getPstnCalls, getDirectRoutingCalls), archived one row a blob under pstn/ and "
        "directrouting/. The hourly sync_usage_logs timer keeps them current.",
    )
    actions = usage.add_subparsers(dest="usage_action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "backfill",
        help="archive the rows of a range now",
        description="Read the logs over the range in parts of up to 90 days (Graph's limit) "
        "and archive each row not archived yet. Safe to repeat: a row is never written twice. "
        "Prints a summary line per log: rows listed, written, already archived. "
        "Exit 1 if a log could not be read to the end.",
    )
    add_range(p)
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
    add_range(p, since_default="30d")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_usage_report)

    p = actions.add_parser(
        "health",
        help="Direct Routing health per SBC: NER, SIP codes, short calls, concurrency",
        description="Per SBC, per hour and per day: attempts, the Network Effectiveness Ratio "
        "(answered, busy, no answer, cancelled while ringing and declined attempts / attempts; "
        "flagged below 100 attempts), the top final SIP codes with Microsoft's sub-reason, "
        "answered calls' average duration and share under 15 s, peak concurrent calls and the "
        "media bypass share (docs/usage-logs.md). Brings the direct_routing_calls table up to "
        "date with the archive first, as `usage report` does.",
    )
    add_range(p, since_default="30d")
    add_outputs(p)
    p.add_argument("--top", type=_positive, default=TOP_SIP_CODES, help="SIP codes per SBC (10)")
    p.set_defaults(handler=cmd_usage_health)
