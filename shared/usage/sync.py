"""Copy PSTN and Direct Routing log rows from Graph into the archive, by date range.

The logs are not delivered by change notifications: they are read with getPstnCalls /
getDirectRoutingCalls over a start-time range (at most 90 days a request, 1,000 rows a page
with ``@odata.nextLink``), learn.microsoft.com/graph/api/callrecords-callrecord-getpstncalls
and .../callrecords-callrecord-getdirectroutingcalls.

The hourly run reads each log from its watermark up to now, a day at a time, and moves the
watermark to a day's end only once every page of that day is written; then, every log's new
ground done, it re-reads the three days before the watermark (rows can appear late; once a day
a week, reread.py). A throttle longer than a few seconds, an outage or the run's time budget
(host.json's functionTimeout less a margin) ends the run with the watermark where the last
complete day left it; the next run resumes there.
Throttling: learn.microsoft.com/graph/throttling-limits ("Cloud communication service
limits", PSTN and Direct Routing logs): 1,000 requests / 60 s per tenant, 200 per app per
tenant and 50 per collection; the run paces itself at the last, the strictest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared import permission
from shared.clock import utcnow
from shared.graph import GraphError, OutOfTime, Throttled, Unreachable, paced_until, pages
from shared.graph.paging import paced_by
from shared.graph.retry import BACKFILL_THROTTLED
from shared.hostconfig import run_budget
from shared.ports import UsagePorts
from shared.progress import fraction_done
from shared.ratelimit import SlidingWindow
from shared.usage import reread
from shared.usage.archive import ArchivedIndex, UsageRow, parse_row, write_row
from shared.usage.kinds import UsageKind, configured_kinds
from shared.usage.ranges import MAX_RANGE, date_ranges, function_path
from shared.usage.watermark import Watermark, WatermarkConflict, WatermarkStore

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
# How far before the watermark a run re-reads (rows appear late): reread.py.
COLLECTION_LIMIT, COLLECTION_PERIOD = 50, 60.0  # requests per collection (log) per 60 s
WRITE_CONCURRENCY = 32  # blob uploads in flight for one page


@dataclass
class KindReport:
    """What a run did for one log; passed to ``progress`` after every page."""

    kind: UsageKind
    since: datetime
    until: datetime
    dry_run: bool = False
    ranges: int = 0
    pages: int = 0
    listed: int = 0
    written: int = 0  # dry run: would be written
    archived: int = 0  # listed and already in the archive
    unparsed: int = 0  # kept under _unparsed/ (no id or start time)
    done_until: datetime | None = None  # every row starting before this is archived
    stopped: str | None = None  # why the run ended early (None: the whole range is done)
    watermark: datetime | None = None  # after the run (hourly run only)
    range_written: int = field(default=0, repr=False)  # ``written`` when the range began

    def absorb(self, again: KindReport) -> None:
        """Count a second copy over an earlier part of this report's range (the re-read)."""
        self.ranges += again.ranges
        self.pages += again.pages
        self.listed += again.listed
        self.written += again.written
        self.archived += again.archived
        self.unparsed += again.unparsed
        self.stopped = self.stopped or again.stopped

    @property
    def fraction(self) -> float:
        return fraction_done(self.since, self.until, self.done_until)

    def summary(self) -> str:
        verb = "would write" if self.dry_run else "written"
        text = (
            f"{self.kind.label}: {self.listed} rows listed, {self.written} {verb}, "
            f"{self.archived} already archived"
        )
        if self.unparsed:
            text += f", {self.unparsed} without id/start kept under {self.kind.prefix}_unparsed/"
        if self.stopped:
            text += f" (stopped early: {self.stopped})"
        return text


async def _store(
    ports: UsagePorts, rows: list[UsageRow], index: ArchivedIndex, dry_run: bool
) -> list[bool]:
    """Write each row the index does not know (dry run: count them); True where this call
    wrote (would write) it."""
    known = [await index.contains(row) for row in rows]
    semaphore = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def one(row: UsageRow, archived: bool) -> bool:
        if archived:
            return False
        if dry_run:
            index.add(row)  # a row listed twice (a PSTN boundary) is counted once
            return True
        async with semaphore:
            written = await write_row(ports.archive, row)
        index.add(row)
        return written

    return list(await asyncio.gather(*(one(r, k) for r, k in zip(rows, known, strict=True))))


async def copy_range(
    ports: UsagePorts,
    kind: UsageKind,
    since: datetime,
    until: datetime,
    *,
    step: timedelta = MAX_RANGE,
    limiter: SlidingWindow | None = None,
    progress: Callable[[KindReport], None] | None = None,
    range_done: Callable[[datetime, int], Awaitable[None]] | None = None,
    dry_run: bool = False,
    wait_long_throttles: bool = False,
    deadline: float | None = None,
) -> KindReport:
    """Archive every row of ``kind`` that started in [since, until), one range (a day, or 90 days) at a time.

    ``range_done(end, written)`` runs after the last page of each range is written (the
    hourly run saves its watermark there). A long throttle (unless ``wait_long_throttles``,
    the CLI backfill, which waits it out, 2 min at most at a time), Graph out of reach after
    the client's in-place retries, the time budget (``deadline``, time.monotonic(), checked
    between pages) or a watermark saved by another run ends the copy early, with ``stopped``
    saying why and ``done_until`` how far it got. Anything else (401/403, storage) raises.
    """
    report = KindReport(kind, since.astimezone(UTC), until.astimezone(UTC), dry_run=dry_run)
    limiter = limiter or SlidingWindow(COLLECTION_LIMIT, COLLECTION_PERIOD)
    index = ArchivedIndex(ports.archive)
    if progress:
        progress(report)
    try:
        for start, end in date_ranges(report.since, report.until, step):
            await _copy_one_range(
                ports,
                kind,
                start,
                end,
                report,
                index,
                limiter,
                progress,
                dry_run,
                wait_long_throttles,
                deadline,
            )
            if range_done:
                await range_done(end, report.written - report.range_written)
            if progress:
                progress(report)
    except (Throttled, Unreachable, OutOfTime, WatermarkConflict) as exc:
        report.stopped = _why(exc)
    return report


async def _copy_one_range(
    ports: UsagePorts,
    kind: UsageKind,
    start: datetime,
    end: datetime,
    report: KindReport,
    index: ArchivedIndex,
    limiter: SlidingWindow,
    progress: Callable[[KindReport], None] | None,
    dry_run: bool,
    wait_long_throttles: bool,
    deadline: float | None,
) -> None:
    """Every page of one range. The next page is fetched while this one's rows are written
    (its link is known), so Graph's answer time and the writes overlap; the range counts as
    done only once every page is written."""
    report.ranges += 1
    report.range_written = report.written

    # Out of time before a request, the run ends with what is done saved; the next run
    # resumes at the watermark.
    pace = (
        paced_by(limiter)
        if deadline is None
        else paced_until(limiter, deadline, what=f"{start:%Y-%m-%d %H:%M} UTC")
    )

    # The next page is requested while this one's rows are written (read_ahead); a throttle
    # stops the hourly run at its watermark, and is waited out by a backfill.
    read = pages(
        ports.graph,
        ports.graph.url(function_path(kind.function, start, end)),
        pace=pace,
        retry=BACKFILL_THROTTLED if wait_long_throttles else None,
        read_ahead=True,
    )
    async with contextlib.aclosing(read) as it:
        async for page in it:
            rows = [parse_row(kind, bytes(raw)) for raw in page.value]
            outcomes = await _store(ports, rows, index, dry_run)
            report.pages += 1
            report.listed += len(rows)
            report.written += sum(outcomes)
            report.archived += len(rows) - sum(outcomes)
            report.unparsed += sum(1 for row in rows if row.id is None or row.start is None)
            if progress:
                progress(report)
    report.done_until = end


def _why(exc: Exception) -> str:
    if isinstance(exc, Throttled):
        wait = f", Retry-After {exc.retry_after:.0f} s" if exc.retry_after is not None else ""
        return f"throttled ({exc.status}{wait})"
    if isinstance(exc, GraphError):
        return f"Graph unreachable ({exc.code}: {exc.message[:100]})"
    return str(exc)


@dataclass
class _HourlyRun:
    """One log's part of the hourly run: new ground from its watermark to now, then the
    re-read of the days before the watermark (late rows), paced by one limiter."""

    kind: UsageKind
    store: WatermarkStore
    mark: Watermark
    since: datetime  # the re-read's start (the first run: the backfill's)
    now: datetime
    deep: bool
    frontier: datetime  # the watermark as the run began (the first run: ``since``)
    limiter: SlidingWindow = field(
        default_factory=lambda: SlidingWindow(COLLECTION_LIMIT, COLLECTION_PERIOD)
    )
    report: KindReport | None = None

    async def range_done(self, end: datetime, written: int) -> None:
        if self.mark.until is None or end > self.mark.until:
            self.mark.until = end
        self.mark.updated = utcnow()
        self.mark.count(written, self.mark.updated)
        await self.store.save(self.mark)

    async def copy(
        self, ports: UsagePorts, since: datetime, until: datetime, deadline: float, step: timedelta
    ) -> KindReport:
        return await copy_range(
            ports,
            self.kind,
            since,
            until,
            step=step,
            limiter=self.limiter,
            range_done=self.range_done,
            deadline=deadline,
        )


async def _plan(ports: UsagePorts, store: WatermarkStore, kind: UsageKind) -> _HourlyRun:
    mark = await store.load(kind)
    now = utcnow()
    if mark.until is None:
        days = ports.settings.usage_backfill_days
        log.info("%s: first run, reading back %d days", kind.label, days)
        since = now - timedelta(days=days)
        return _HourlyRun(kind, store, mark, since, now, deep=True, frontier=since)
    last_deep = await reread.last_deep(ports.state, kind)
    plan = reread.plan(mark.until, now, last_deep, ports.settings)
    if plan.deep:
        log.info("%s: deep re-read from %s (late rows)", kind.label, f"{plan.since:%Y-%m-%d %H:%M}")
    frontier = max(min(mark.until, now), plan.since)
    return _HourlyRun(kind, store, mark, plan.since, now, deep=plan.deep, frontier=frontier)


async def _new_ground(ports: UsagePorts, run: _HourlyRun, deadline: float, step: timedelta) -> None:
    """From the watermark to now (the first run: its whole backfill, oldest first, so the
    watermark moves up a day at a time)."""
    run.report = await run.copy(ports, run.frontier, run.now, deadline, step)
    run.report.since = run.since  # the report covers the re-read too


async def _reread(ports: UsagePorts, run: _HourlyRun, deadline: float, step: timedelta) -> None:
    """The days before the watermark again, for rows Graph published late; skipped when the
    new ground was cut short (the same throttle, outage or budget would end it)."""
    assert run.report is not None
    if run.report.stopped is not None:
        return
    if run.since < run.frontier:
        run.report.absorb(await run.copy(ports, run.since, run.frontier, deadline, step))
    if run.deep and run.report.stopped is None:
        await reread.deep_done(ports.state, run.kind, run.now)


async def sync_usage_logs(
    ports: UsagePorts, budget: timedelta | None = None, step: timedelta = DAY
) -> list[KindReport]:
    """The hourly timer: each log of USAGE_LOGS_KINDS (by cloud), first from its watermark to
    now, then (all logs' new ground done) the days before it again for late rows; never raises
    for a throttle, an outage or the time budget (the next run resumes from the watermark).

    New ground first: a run cut short by a long throttle or the budget still moves each
    watermark, where re-reading a week oldest first could spend every run on old days and
    leave the watermark, and the second log, where they were."""
    # Within host.json's functionTimeout, less a margin (hostconfig.run_budget).
    budget = run_budget() if budget is None else budget
    deadline = time.monotonic() + budget.total_seconds()
    store = WatermarkStore(ports)
    runs = [
        await _plan(ports, store, kind) for kind in configured_kinds(ports.settings.usage_kinds)
    ]
    for phase in (_new_ground, _reread):
        for run in runs:
            sent = permission.sent_now()
            try:
                await phase(ports, run, deadline, step)
            except GraphError as exc:
                # health names the missing role (shared/permission.py)
                if permission.is_refusal(exc):
                    await permission.note_refusal(ports.state, exc, sent)
                raise
    reports: list[KindReport] = []
    for run in runs:
        assert run.report is not None
        report = run.report
        report.watermark = run.mark.until
        reports.append(report)
        mark = report.watermark.isoformat() if report.watermark else "none"
        if report.stopped:
            log.warning(
                "%s: run ended early, watermark at %s: %s", run.kind.label, mark, report.stopped
            )
        else:
            log.info("%s; watermark %s", report.summary(), mark)
    return reports
