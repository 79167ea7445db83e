"""Operator commands for the call record archiver (docs/operations.md): ``callrecords …``
once installed (``pip install .[cli]``), or ``python cli.py …`` in a checkout.

    status          subscription, queues, recent archiving, and a verdict (exit 1 if unhealthy)
    subscription    list | ensure | renew [ID] | delete (ID | --all)
    backfill        queue what Graph has (up to 30 days) and the archive lacks
    enqueue         queue record ids by hand (e.g. a bot's callChainId)
    fetch           archive one record now, in the foreground
    replay-poison   show why messages were parked, and put them back on the queue
    tabulate        rebuild the call-quality tables (Parquet) from the archive
    quality         the call-quality report (poor streams, worst users/subnets/...)
    usage           PSTN / Direct Routing call logs: backfill, report, health (per SBC)

Settings are the app's: the environment, then the Values of local.settings.json in the checkout
this package sits in (a clone, or ``pip install -e``), else in the current directory.
Identity: DefaultAzureCredential (the managed identity where the app runs; a service principal
in AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET elsewhere) for Graph and storage.
The logic is in shared/ (and the operator's reports in callrecords/); this module only parses,
calls and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
    ServiceRequestError,
)

# First: without the cli extra the command stops here, in one line.
from callrecords import _requires  # noqa: F401  # pyright: ignore[reportUnusedImport]
from callrecords.analytics import commands as analytics
from callrecords.analytics.buildings import BuildingFileError
from callrecords.analytics.report import Dimension, NoTables
from callrecords.usage import commands as usage_commands
from shared import poison
from shared.analytics.rules import RuleSetName
from shared.archiver import archive_record
from shared.clock import utcnow
from shared.graph import GraphError, NotFound, Unauthorized, Unreachable
from shared.graph.retry import RESUME_PAUSED, RetryLater
from shared.ids import is_guid, normalize_id
from shared.messages import Source, WorkItem, for_terminal
from shared.reconcile import QUEUE_CHUNK, EmptyRange, Report, reconcile, since_from_text
from shared.runtime import Runtime, build_runtime
from shared.settings import SettingError, Settings, load_settings, local_settings_env
from shared.status import Verdict, collect
from shared.subscriptions import Subscription, SubscriptionError, SubscriptionKeeper
from shared.workqueue import QueueUnavailable


def _home() -> Path:
    """Where local.settings.json and the local table cache (.local/) are: the checkout this
    package sits in, or the current directory when it is installed elsewhere."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "function_app.py").is_file() else Path.cwd()


ROOT = _home()


class CliError(Exception):
    """An expected failure: printed as one line on stderr, exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ output helpers


def _when(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(delta: timedelta | None) -> str:
    if delta is None:
        return "?"
    seconds = delta.total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _public(url: str | None) -> str:
    """A URL without its query string (it may carry a function key)."""
    if not url:
        return "-"
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def _sub_line(sub: Subscription, ours: bool | None = None) -> str:
    left = sub.remaining()
    expiry = f"expires {_when(sub.expires)} (in {_ago(left)})" if left > timedelta(0) else "expired"
    mark = "" if ours is None else ("  [this app]" if ours else "  [other URL]")
    return f"{sub.id}  {expiry}  {_public(sub.notification_url)}{mark}"


def _guids(values: list[str], what: str) -> list[str]:
    """Every value normalised, or a usage error naming each one that is not a GUID."""
    bad = [v for v in values if not is_guid(v.strip())]
    if bad:
        names = ", ".join(repr(v) for v in bad)
        raise CliError(f"not a GUID {what}: {names}; nothing done", code=2)
    return list(dict.fromkeys(normalize_id(v.strip()) for v in values))


# ------------------------------------------------------------------------------ progress


class ProgressBar:
    """A one-line text bar on a terminal; plain lines, one per finished day, otherwise."""

    WIDTH = 30

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.last_draw = 0.0
        self.last_day: datetime | None = None
        self.drawn = False

    def update(self, report: Report) -> None:
        if report.pages == 0 and report.done_until is None:
            self.start(report)
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.1 and report.fraction < 1.0:
                return
            self.last_draw = now
            filled = round(report.fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {int(report.fraction * 100):3d}%  listed {report.listed}, "
                f"archived {report.archived}, {self._missing_word(report)} {report.missing}"
            )
            self.stream.flush()
            self.drawn = True
        elif report.done_until is not None and report.done_until != self.last_day:
            self.last_day = report.done_until
            day = (report.done_until - timedelta(microseconds=1)).strftime("%Y-%m-%d")
            print(
                f"{self.label}: {day} done ({int(report.fraction * 100)}%): listed {report.listed}, "
                f"archived {report.archived}, {self._missing_word(report)} {report.missing}",
                file=self.stream,
                flush=True,
            )

    def start(self, report: Report) -> None:
        if report.clamped:
            print(
                f"note: Graph keeps call records for 30 days; starting at {_when(report.since)} "
                f"instead of {_when(report.requested_since)}",
                file=self.stream,
                flush=True,
            )
        print(
            f"{self.label}: {_when(report.since)} .. {_when(report.until)}"
            + (" (dry run: nothing is queued)" if report.dry_run else ""),
            file=self.stream,
            flush=True,
        )

    @staticmethod
    def _missing_word(report: Report) -> str:
        return "missing" if report.dry_run else "queued"

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------ commands


async def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    facts = await collect(rt)
    if args.json:
        print(json.dumps(facts.as_dict(), indent=2))
        return 0 if facts.verdict is Verdict.HEALTHY else 1
    s = rt.settings
    if facts.subscription_id:
        left = (facts.subscription_expires or utcnow()) - utcnow()
        sub = f"{facts.subscription_id}, expires {_when(facts.subscription_expires)} (in {_ago(left)})"
    else:
        sub = "none"
    oldest = facts.oldest_visible_message_minutes
    waiting = "" if oldest is None else f" (oldest waiting {oldest:.1f} min)"
    depth = "?" if facts.queue_depth is None else str(facts.queue_depth)
    parked = "?" if facts.poison_depth is None else str(facts.poison_depth)
    oldest_parked = (
        ""
        if facts.oldest_parked_hours is None
        else f" (oldest parked {facts.oldest_parked_hours:.1f} h ago)"
    )
    last = (
        f"{facts.last_archived_blob} at {_when(facts.last_archived_at)}"
        if facts.last_archived_blob
        else "nothing in the last 24 h"
    )
    rows = [
        ("subscription", sub),
        ("queue", f"{s.queue_name}: {depth} message(s){waiting}"),
        ("poison queue", f"{s.poison_queue_name}: {parked} message(s){oldest_parked}"),
        ("last archived", last),
        ("archived (24 h)", str(facts.archived_last_24h)),
        *(
            (
                f"{u['label']} log" if len(u["label"]) < 12 else u["label"],
                f"watermark {_when(u['watermark'])}, {u['archived_last_24h']} rows archived (24 h)",
            )
            for u in facts.usage_logs
        ),
        ("verdict", facts.verdict),
    ]
    for name, value in rows:
        print(f"{name:<16} {value}")
    for problem in facts.problems:
        print(f"  - {problem}")
    return 0 if facts.verdict is Verdict.HEALTHY else 1


async def cmd_subscription(rt: Runtime, args: argparse.Namespace) -> int:
    keeper = SubscriptionKeeper(rt.graph, rt.settings, rt.state)
    action = args.action
    if action == "list":
        if not args.all:
            rt.settings.require_notification_url()
        subs = await keeper.list(every=args.all)
        for sub in subs:
            print(_sub_line(sub, keeper.is_ours(sub) if args.all else None))
        if not subs:
            where = "" if args.all else f" delivering to {_public(rt.settings.notification_url)}"
            print(f"no subscriptions{where}")
        return 0
    if action == "ensure" or (action == "renew" and not args.id):
        outcome = await keeper.ensure(force_renew=action == "renew")
        sub = outcome.subscription
        print(
            f"{outcome.action} {sub.id}, expires {_when(sub.expires)} (in {_ago(sub.remaining())})"
        )
        return 0
    if action == "renew":
        (sid,) = _guids([args.id], "subscription id")
        try:
            sub = await keeper.renew(await keeper.get(sid))
        except NotFound:
            raise CliError(
                f"subscription {sid} not found (expired or deleted); "
                "`subscription ensure` creates a new one"
            ) from None
        print(f"renewed {sub.id}, expires {_when(sub.expires)} (in {_ago(sub.remaining())})")
        return 0
    # delete
    if args.all:
        subs = await keeper.list()
        for sub in subs:
            await keeper.delete(sub.id)
            print(f"deleted {sub.id}")
        if not subs:
            print(f"no subscriptions delivering to {_public(rt.settings.notification_url)}")
        return 0
    (sid,) = _guids([args.id], "subscription id")
    try:
        await keeper.delete(sid)
    except NotFound:
        raise CliError(f"subscription {sid} not found (already deleted or expired)") from None
    print(f"deleted {sid}")
    return 0


async def cmd_backfill(rt: Runtime, args: argparse.Namespace) -> int:
    if not args.dry_run:
        try:
            waiting = (await rt.work.queue.get_queue_properties()).approximate_message_count
        except ResourceNotFoundError:
            raise CliError(
                f"queue {rt.settings.queue_name} does not exist (start the app once, or deploy "
                "the infrastructure)"
            ) from None
        if waiting:
            print(
                f"note: {waiting} message(s) are still queued; a record queued again is fetched "
                "twice (harmless: each version is written once)",
                file=sys.stderr,
            )
    bar = ProgressBar(sys.stderr, "backfill")
    try:
        report = await reconcile(
            rt,
            args.since,
            args.until,
            source=Source.BACKFILL,
            progress=bar.update,
            dry_run=args.dry_run,
        )
    except EmptyRange as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    done = (
        f"{report.missing} not archived (dry run: nothing queued)"
        if args.dry_run
        else f"{report.queued} queued"
    )
    print(
        f"{_when(report.since)} .. {_when(report.until)}: {report.listed} listed, "
        f"{report.archived} already archived, {done}"
    )
    return 0


async def cmd_enqueue(rt: Runtime, args: argparse.Namespace) -> int:
    ids = _guids(args.ids, "call record id")
    count = 0
    for first in range(0, len(ids), QUEUE_CHUNK):  # a bounded number of sends in flight
        count += await rt.work.put(
            WorkItem.new(rid, Source.CLI) for rid in ids[first : first + QUEUE_CHUNK]
        )
    print(f"queued {count} record id(s) on {rt.settings.queue_name}")
    return 0


async def cmd_fetch(rt: Runtime, args: argparse.Namespace) -> int:
    (rid,) = _guids([args.id], "call record id")

    def paused(exc: BaseException, wait: float) -> None:
        # A huge meeting: Graph's per-record limit, checkpointed (recordfetch.Paused).
        why = exc.message if isinstance(exc, RetryLater) else str(exc)
        print(f"paused ({why}); continuing in {wait:.0f} s", file=sys.stderr)

    try:
        result = await RESUME_PAUSED.run(
            lambda: archive_record(rt, WorkItem.new(rid, Source.CLI)), on_retry=paused
        )
    except NotFound:
        raise CliError(
            f"record {rid} not found in Graph: not published yet (up to 150 min after the call "
            "ends) or older than 30 days"
        ) from None
    except ResourceNotFoundError:
        raise CliError(
            f"archive container {rt.settings.archive_container} does not exist"
        ) from None
    print(f"blob     {result.blob} ({'written' if result.written else 'already archived'})")
    print(f"version  {result.version}")
    print(f"pages    {result.pages}")
    print(f"bytes    {result.bytes}")
    return 0


async def cmd_replay_poison(rt: Runtime, args: argparse.Namespace) -> int:
    ids = set(_guids(args.id, "call record id")) if args.id else None
    s = rt.settings
    raw = rt.raw_poison()
    now = utcnow()

    def show(entry: poison.Parked, outcome: str) -> None:
        # Everything but the age comes from the message: escaped (for_terminal).
        label, out = for_terminal(entry.label), for_terminal(outcome)
        print(f"{label}  parked {_ago(entry.age(now))} ago  -> {out}")
        print(f"    reason: {for_terminal(entry.reason)}")
        if entry.last_error:
            print(f"    last error: {for_terminal(entry.last_error)}")
        if entry.body is not None:
            print(f"    body: {for_terminal(entry.body[:120])}")

    try:
        summary = await poison.replay(
            rt.work,
            raw,
            dry_run=args.dry_run,
            ids=ids,
            drop_malformed=args.drop_malformed,
            report=show,
        )
    except ResourceNotFoundError:
        print(f"{s.poison_queue_name} does not exist: nothing was ever parked")
        return 0
    finally:
        await raw.close()
    parts = [f"{summary.seen} in {s.poison_queue_name}"]
    if args.dry_run:
        parts.append("dry run: nothing changed")
    else:
        parts.append(f"{summary.replayed} replayed")
        if summary.dropped:
            parts.append(f"{summary.dropped} malformed dropped")
    if summary.malformed_kept:
        parts.append(f"{summary.malformed_kept} malformed left (--drop-malformed deletes them)")
    if summary.failed:
        parts.append(f"{summary.failed} failed (left in poison)")
    print("; ".join(parts))
    absent = sorted((ids or set()) - summary.found_ids)
    for rid in absent:
        print(f"error: no poison message for {rid}", file=sys.stderr)
    return 1 if summary.failed or absent else 0


async def cmd_tabulate(rt: Runtime, args: argparse.Namespace) -> int:
    try:
        lines = await analytics.run_tabulate(rt, args.since, args.until or utcnow(), sys.stderr)
    except ResourceNotFoundError:
        raise CliError(
            f"archive container {rt.settings.archive_container} does not exist"
        ) from None
    for line in lines:
        print(line)
    return 0


async def cmd_quality(rt: Runtime | None, args: argparse.Namespace) -> int:
    until = args.until or utcnow()
    container = rt.settings.analytics_container if rt else "local"
    opts = analytics.QualityOptions(
        since=args.since,
        until=until,
        by=Dimension(args.by),
        rules=RuleSetName(args.rules),
        buildings=args.buildings,
        json=args.json,
        html=args.html,
        tables=args.tables,
        cache=args.cache or ROOT / ".local" / "tables" / container,
        reliability=args.reliability,
        missing_subnets=args.missing_subnets,
        sql=args.sql,
    )
    try:
        return await analytics.run_quality(rt, opts, sys.stdout, sys.stderr)
    except NoTables as exc:
        raise CliError(
            f"{exc}; build them first: {analytics.since_hint(args.since, until)}"
        ) from None
    except (BuildingFileError, ValueError) as exc:
        raise CliError(str(exc), code=2) from None


# ------------------------------------------------------------------------------ wiring


def _when_arg(text: str) -> datetime:
    try:
        return since_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range_options(p: argparse.ArgumentParser) -> None:
    """The required range of backfill, tabulate and quality; every form _when_arg reads."""
    p.add_argument(
        "--since", type=_when_arg, required=True, help="7d, 36h, 90m (ago) or an ISO date-time"
    )
    p.add_argument("--until", type=_when_arg, default=None, help="same forms; default: now")


def build_parser(prog: str = "callrecords") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Operator commands for the call record archiver (docs/operations.md).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "status",
        help="health in one look; exit 1 when unhealthy",
        description="Subscription, queue and poison depth, last record archived, records "
        "archived in the last 24 h, and a verdict: 'healthy' or each problem. "
        "Exit 0 healthy, 1 unhealthy.",
    )
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser(
        "subscription",
        help="list, ensure, renew or delete the Graph subscription",
        description="list: this app's subscriptions (--all: every one the identity can see). "
        "ensure: create, renew, adopt or keep, as the hourly timer does. renew [ID]: renew "
        "now. delete ID | --all: delete without asking (for scripts).",
    )
    p.add_argument("action", choices=("list", "ensure", "renew", "delete"))
    p.add_argument("id", nargs="?", metavar="ID", help="a subscription id (renew, delete)")
    p.add_argument("--all", action="store_true", help="list: every subscription; delete: all ours")
    p.set_defaults(handler=cmd_subscription)

    p = sub.add_parser(
        "backfill",
        help="queue what Graph has and the archive lacks",
        description="List call records by start time over the range (Graph keeps 30 days; an "
        "older start is clamped, with a note) and queue the ones not archived yet. Safe to run "
        "again: archived records are skipped.",
    )
    _range_options(p)
    p.add_argument("--dry-run", action="store_true", help="count, queue nothing")
    p.set_defaults(handler=cmd_backfill)

    p = sub.add_parser(
        "enqueue",
        help="queue call record ids to archive",
        description="Queue record ids (GUIDs, e.g. a bot's callChainId) for the archiver. "
        "If any id is not a GUID nothing is queued.",
    )
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(handler=cmd_enqueue)

    p = sub.add_parser(
        "fetch",
        help="archive one record now, in the foreground",
        description="Fetch every page of one record and write it to the archive (if that "
        "version is not there yet); prints blob name, version, pages and bytes.",
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(handler=cmd_fetch)

    p = sub.add_parser(
        "replay-poison",
        help="show parked messages and put them back on the queue",
        description="List every message in <queue>-poison (id, age, reason, last error) and put "
        "the replayable ones back on the queue as fresh items. Malformed ones are reported and "
        "left in place unless --drop-malformed.",
    )
    p.add_argument("--dry-run", action="store_true", help="list only, change nothing")
    p.add_argument(
        "--id", action="append", default=[], metavar="ID", help="replay only this record id"
    )
    p.add_argument("--drop-malformed", action="store_true", help="delete malformed messages")
    p.set_defaults(handler=cmd_replay_poison)

    p = sub.add_parser(
        "tabulate",
        help="rebuild the call-quality tables (Parquet) from the archive",
        description="Rebuild the calls, streams and participants tables of every UTC day the "
        "range touches, from the latest archived version of each record, into "
        "ANALYTICS_CONTAINER (Hive-partitioned by date). Safe to repeat.",
    )
    _range_options(p)
    p.set_defaults(handler=cmd_tabulate)

    p = sub.add_parser(
        "quality",
        help="call-quality report: poor streams (CQD rules), worst users/subnets/...",
        description="Streams classified, poor, poor rate beside Microsoft's audio target "
        "(3%), setup and drop failure rates, and the worst 10 of a dimension (or every "
        "network / inside / vpn / scenario row) with the QER targets met or missed, over the "
        "streams and segments tables (fetched to a local cache, or --tables DIR). DuckDB does "
        "the work; --sql prints the same queries for Spark SQL or Data Explorer.",
    )
    _range_options(p)
    p.add_argument("--by", choices=[d.value for d in Dimension], default=Dimension.USER.value)
    p.add_argument("--rules", choices=[r.value for r in RuleSetName], default=RuleSetName.CQD.value)
    p.add_argument(
        "--buildings", type=Path, metavar="FILE.csv", help="CQD building file (15 columns)"
    )
    p.add_argument(
        "--reliability",
        action="store_true",
        help="rank rows by setup failures and drops; reliability first in text and page",
    )
    p.add_argument(
        "--missing-subnets",
        action="store_true",
        help="also list subnets with >= 10 audio streams the building file does not map",
    )
    p.add_argument(
        "--sql",
        choices=[d.value for d in analytics.SqlDialect],
        help="print the report's queries for this engine (no tables read) and stop",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained page")
    p.add_argument(
        "--tables", type=Path, metavar="DIR", help="a local copy of the tables (no storage)"
    )
    p.add_argument("--cache", type=Path, metavar="DIR", help="where fetched tables are kept")
    p.set_defaults(handler=cmd_quality)
    usage_commands.add_parser(sub, _when_arg)
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Argument mistakes, found before any setting is read or anything is touched."""
    if args.command == "enqueue":
        _guids(args.ids, "call record id")
    elif args.command == "fetch":
        _guids([args.id], "call record id")
    elif args.command == "replay-poison":
        _guids(args.id, "call record id")
    elif args.command == "subscription" and args.id:
        _guids([args.id], "subscription id")
    if args.command == "subscription":
        if args.action == "delete" and bool(args.id) == bool(args.all):
            parser.error("subscription delete needs a subscription ID or --all (not both)")
        if args.action in ("list", "ensure") and args.id:
            parser.error(f"subscription {args.action} takes no ID")
        if args.all and args.action not in ("list", "delete"):
            parser.error("--all goes with list or delete")
    if args.command == "quality" and not args.buildings and not args.sql:
        if Dimension(args.by).needs_buildings:
            parser.error(f"--by {args.by} needs a building file: --buildings FILE.csv")
        if args.missing_subnets:
            parser.error("--missing-subnets needs a building file: --buildings FILE.csv")


def load_environment() -> Settings:
    """The app's settings; the merged values also go to os.environ, where azure-identity
    looks (IDENTITY_ENDPOINT, AZURE_CLIENT_SECRET, ... may come from local.settings.json)."""
    env = local_settings_env(ROOT)
    os.environ.update(env)
    return load_settings(env)


def credential(settings: Settings) -> Any:
    """DefaultAzureCredential: environment service principal, then the managed identity (the
    App Service endpoint answers at once), then developer sign-ins (storage roles only)."""
    from azure.identity.aio import DefaultAzureCredential

    if settings.client_id:
        return DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    return DefaultAzureCredential()


async def run(args: argparse.Namespace) -> int:
    if getattr(args, "tables", None) is not None or getattr(args, "sql", None):
        # quality over a local copy, or its SQL only: no settings
        return await args.handler(None, args)
    settings = load_environment()
    rt = build_runtime(settings, credential(settings))
    try:
        return await args.handler(rt, args)
    finally:
        await rt.close()


def describe(exc: BaseException, verbose: bool) -> str:
    """One line for an expected failure."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, Unauthorized):
        return (
            f"{first}: the identity needs the CallRecords.Read.All application role on Microsoft "
            "Graph (a user's az login cannot read call records)"
        )
    if isinstance(exc, Unreachable):
        return f"cannot reach Graph: {first}"
    if isinstance(exc, ClientAuthenticationError):
        text = str(exc) if verbose else first
        return (
            f"no Azure identity could get a token ({text}). Run where the managed identity is, "
            "or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET; -v shows why "
            "each credential failed"
        )
    if isinstance(exc, QueueUnavailable) and exc.__cause__ is not None:
        cause = exc.__cause__
        if isinstance(cause, ResourceNotFoundError):
            return f"{first} (the queue does not exist: start the app once, or deploy the infra)"
        return f"{first} ({str(cause).strip().splitlines()[0] if str(cause) else ''})"
    if isinstance(exc, ServiceRequestError):
        return f"cannot reach storage: {first}"
    return first


EXPECTED = (
    CliError,
    SettingError,
    SubscriptionError,
    GraphError,
    AzureError,
    QueueUnavailable,
    usage_commands.UsageCommandError,
)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The ``callrecords`` command; ``prog`` names it in usage lines (cli.py passes its own)."""
    parser = build_parser(prog or "callrecords")
    args = parser.parse_args(argv)
    try:
        _check_args(parser, args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDKs' own warnings repeat what the one error line says; -v shows them.
    logging.getLogger("azure").setLevel(logging.WARNING if args.verbose else logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except EXPECTED as exc:
        print(f"error: {describe(exc, args.verbose)}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 1
