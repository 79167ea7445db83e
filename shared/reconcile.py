"""Reconciliation and backfill: list what Graph has, queue what the archive lacks.

Notifications are at-least-once but can still be lost (an expired or removed subscription,
an endpoint in Graph's "drop" state). Listing callRecords by startDateTime and comparing
with the archive closes those gaps. The List API allows 40 requests / 20 s per app.

The range is worked one UTC day at a time: the archive is foldered by the day a call
started, so each day needs one blob listing and its own List filter, memory stays at one
day of names however long the range, and progress is simply "days done".

The app itself never lists a long range in one invocation: a tenant with 100,000 calls a day
has ~70 List pages per hour of start time, and at 40 List requests / 20 s one 10-minute
invocation could not finish 48 hours. The hourly timer queues one control message per hour of
start time (``RECONCILE_SLICE``), newest first, so the recent hours are worked first, no
invocation runs long, and progress survives restarts (each slice is a queue message, retried
by the host on its own). The hourly pass covers the last RECONCILE_RECENT_HOURS (default 4);
once a day, at RECONCILE_DEEP_PASS_HOUR UTC (default 2), a deep pass covers 48 hours.
docs/operations.md has the List budget arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared import permission
from shared.archiver import describe
from shared.blobstore import blob_name, record_prefix
from shared.clock import parse_graph_datetime, utcnow
from shared.graph import OutOfTime, Page, paced_until, pages
from shared.graph.paging import Pace, paced_by
from shared.graph.retry import LIST_THROTTLED, Fault, classify_fault, slice_again
from shared.hostconfig import run_budget
from shared.ids import is_guid
from shared.jsonvalues import as_object
from shared.messages import ControlItem, Source, WorkItem
from shared.ports import ReconcilePorts
from shared.progress import fraction_done
from shared.ratelimit import SlidingWindow

log = logging.getLogger(__name__)

RETENTION = timedelta(days=30)
# Start this much inside the 30 days, so a record is not listed while it is being expired.
RETENTION_MARGIN = timedelta(minutes=5)
DEEP_PASS_SPAN = timedelta(hours=48)
LIST_LIMIT = 40  # requests
LIST_PERIOD = 20.0  # seconds
QUEUE_CHUNK = 100
SLICE = timedelta(hours=1)
# One List pacing window per process: the slices an instance works at once share Graph's List
# limit instead of each pacing itself to the whole of it.
_list_limiter: SlidingWindow | None = None


def list_limiter() -> SlidingWindow:
    global _list_limiter
    if _list_limiter is None:
        _list_limiter = SlidingWindow(LIST_LIMIT, LIST_PERIOD)
    return _list_limiter


class EmptyRange(ValueError):
    """The requested range is empty once clamped to what Graph keeps."""


@dataclass
class Report:
    """What a run found and did; passed to ``progress`` as it goes."""

    since: datetime
    until: datetime
    requested_since: datetime
    source: Source = Source.RECONCILE
    dry_run: bool = False
    listed: int = 0
    archived: int = 0  # listed and already in the archive
    missing: int = 0  # listed and not archived: queued (or, dry run, would be)
    queued: int = 0
    pages: int = 0
    done_until: datetime | None = None  # the range is worked up to here
    # Out of time: the day being listed and the next link to go on from (None: all listed)
    resume: tuple[datetime, str] | None = None

    @property
    def clamped(self) -> bool:
        """More than the 30 days Graph keeps was asked for, so the start was moved forward
        (asking for exactly 30 days is not worth a note)."""
        return self.since - self.requested_since > RETENTION_MARGIN + timedelta(minutes=1)

    @property
    def fraction(self) -> float:
        return fraction_done(self.since, self.until, self.done_until)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def oldest_listable(now: datetime | None = None) -> datetime:
    """The earliest start worth asking Graph for (it keeps records for 30 days)."""
    return (now or utcnow()) - RETENTION + RETENTION_MARGIN


def clamp_range(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    """Graph keeps 30 days: an older start is raised to that (with a note in the log), a
    future end is lowered to now. EmptyRange if nothing is left."""
    now = utcnow()
    until = min(until or now, now)
    if since >= until:
        raise EmptyRange(f"empty range: {_iso(since)} is not before {_iso(until)}")
    oldest = oldest_listable(now)
    if since < oldest:
        log.info("range starts %s; Graph keeps 30 days, starting at %s", _iso(since), _iso(oldest))
        since = oldest
    if since >= until:
        raise EmptyRange(
            f"the range ends {_iso(until)}, before the oldest record Graph keeps (30 days)"
        )
    return since, until


def days(since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[since, until) cut at UTC midnights: the archive's day folders."""
    start = since.astimezone(UTC)
    end = until.astimezone(UTC)
    while start < end:
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        yield start, min(midnight, end)
        start = midnight


@dataclass(frozen=True)
class ArchivedDay:
    """One day folder of the archive: its blob names, and the record folders among them."""

    names: frozenset[str]
    folders: frozenset[str]


# The listing of a day folder the slices of this process share while it runs. The daily pass
# queues 49 slices over 3 days and an instance starts up to batchSize of them at once: each
# listing its day alone was that many listings of up to a day of blobs (about 115,000 names at
# 100,000 calls a day, 23 listing requests) and that many copies of the names in memory, over
# 512 MB. A slice that starts after a listing ended lists again, so a run never misses what
# was archived before it began.
_listing: dict[tuple[int, int, date], asyncio.Task[ArchivedDay]] = {}


async def archived_day(ports: ReconcilePorts, day: date) -> ArchivedDay:
    """The day folder's names, from the listing in flight for it here if there is one."""
    loop = asyncio.get_running_loop()
    key = (id(loop), id(ports.archive), day)  # the task holds both: their ids stay theirs
    task = _listing.get(key)
    if task is None:
        task = loop.create_task(_list_day(ports, day))
        _listing[key] = task

        def done(finished: asyncio.Task[ArchivedDay]) -> None:
            if _listing.get(key) is finished:
                del _listing[key]
            if not finished.cancelled():
                finished.exception()  # retrieved: every waiter has it raised

        task.add_done_callback(done)
    return await asyncio.shield(task)


async def _list_day(ports: ReconcilePorts, day: date) -> ArchivedDay:
    names = frozenset([name async for name in ports.archive.names(f"{day:%Y/%m/%d}/")])
    return ArchivedDay(names, frozenset(name.rsplit("/", 1)[0] + "/" for name in names))


async def list_records(
    ports: ReconcilePorts,
    since: datetime,
    until: datetime,
    pace: Pace,
    resume_from: str | None = None,
) -> AsyncGenerator[Page, None]:
    """Yield pages of callRecords with since <= startDateTime < until (from ``resume_from``,
    a next link of that listing, if given), ``pace`` before every request (a throttle is
    waited out: retry.LIST_THROTTLED)."""
    flt = f"startDateTime ge {_iso(since)} and startDateTime lt {_iso(until)}"
    url = ports.graph.url(f"communications/callRecords?$filter={flt}")
    read = pages(ports.graph, url, token=resume_from, pace=pace, retry=LIST_THROTTLED)
    async with contextlib.aclosing(read) as it:
        page: Page
        async for page in it:
            yield page


def _missing(listed: Any, archived: ArchivedDay) -> str | None:
    """The id of a listed record whose listed version is not archived, else None."""
    item = as_object(listed)
    if item is None or not is_guid(item.get("id")):
        return None
    rid = str(item["id"]).lower()
    try:
        name = blob_name(item)
    except ValueError:
        # No usable version in the listing: any archived version counts as present; no
        # usable start either: queue it and let the archiver sort it out.
        try:
            start = parse_graph_datetime(item.get("startDateTime"))
        except ValueError:
            return rid
        return None if record_prefix(rid, start) in archived.folders else rid
    return None if name in archived.names else rid


async def _queue_missing(
    ports: ReconcilePorts, items: list[Any], archived: ArchivedDay, report: Report
) -> None:
    """Count one List page and queue its records whose listed version is not archived."""
    report.pages += 1
    report.listed += len(items)
    missing = [rid for rid in (_missing(i, archived) for i in items) if rid]
    report.archived += len(items) - len(missing)
    report.missing += len(missing)
    if report.dry_run:
        return
    for first in range(0, len(missing), QUEUE_CHUNK):
        chunk = missing[first : first + QUEUE_CHUNK]
        report.queued += await ports.work.put(WorkItem.new(rid, report.source) for rid in chunk)


async def reconcile(
    ports: ReconcilePorts,
    since: datetime,
    until: datetime | None = None,
    source: Source = Source.RECONCILE,
    progress: Callable[[Report], None] | None = None,
    limiter: SlidingWindow | None = None,
    dry_run: bool = False,
    resume_from: str | None = None,
    deadline: float | None = None,
) -> Report:
    """Queue every record in the range whose listed version has no blob yet.

    Safe to repeat: what is archived is skipped. What is still queued is not known (a queue
    cannot be searched), so a second run before the queue drains queues those ids again;
    the archiver's write-if-absent makes that harmless. ``dry_run`` counts, queues nothing.
    ``resume_from`` continues the first day's listing from that next link; past ``deadline``
    (time.monotonic()) the run stops before its next request and ``resume`` says where to go
    on.
    """
    requested = since
    since, until = clamp_range(since, until)
    report = Report(since, until, requested, source=source, dry_run=dry_run)
    limiter = limiter or SlidingWindow(LIST_LIMIT, LIST_PERIOD)
    if progress:
        progress(report)
    # Past the deadline, before a request (the first of the run is always sent, so a run
    # resumed with no time left still moves on a page), the run stops: ``resume``.
    pace = (
        paced_by(limiter)
        if deadline is None
        else paced_until(limiter, deadline, free=1, what="the next List page")
    )
    for start, end in days(since, until):
        archived = await archived_day(ports, start.astimezone(UTC).date())
        read = list_records(ports, start, end, pace, resume_from)
        resume_from = None  # a next link belongs to the first day's listing only
        try:
            async with contextlib.aclosing(read) as it:
                async for page in it:
                    await _queue_missing(ports, page.objects(), archived, report)
                    if progress:
                        progress(report)
        except OutOfTime as stop:
            report.resume = (start, stop.link)
            break
        report.done_until = end
        if progress:
            progress(report)
    log.info(
        "%s %s..%s: %d listed, %d already archived, %d %s (%d pages)",
        source,
        _iso(since),
        _iso(until),
        report.listed,
        report.archived,
        report.missing,
        "missing (dry run)" if dry_run else "queued",
        report.pages,
    )
    return report


def hour_slices(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """[since, until) cut at whole UTC hours, newest first (the first and last may be partial)."""
    out: list[tuple[datetime, datetime]] = []
    end = until.astimezone(UTC)
    start_at = since.astimezone(UTC)
    while end > start_at:
        hour = end.replace(minute=0, second=0, microsecond=0)
        begin = max(hour if hour < end else hour - SLICE, start_at)
        out.append((begin, end))
        end = begin
    return out


async def queue_slices(ports: ReconcilePorts, span: timedelta, now: datetime | None = None) -> int:
    """Queue one RECONCILE_SLICE per hour of the last ``span`` (aligned down to a whole hour
    and clamped to what Graph keeps), newest first; returns how many."""
    now = now or utcnow()
    since = max((now - span).replace(minute=0, second=0, microsecond=0), oldest_listable(now))
    slices = hour_slices(since, now)
    for start, end in slices:
        # One at a time, in order: the queue hands them out roughly first in, first out.
        await ports.work.put([ControlItem.reconcile_slice(start, end)])
    log.info(
        "reconciliation: %d hourly slices queued, %s..%s, newest first",
        len(slices),
        _iso(since),
        _iso(now),
    )
    return len(slices)


async def queue_recent_slices(ports: ReconcilePorts, hours: int | None = None) -> int:
    """Queue the slices of the last ``hours`` (default 48): lifecycle events and the CLI."""
    return await queue_slices(ports, timedelta(hours=hours) if hours else DEEP_PASS_SPAN)


async def scheduled_pass(ports: ReconcilePorts, now: datetime | None = None) -> int:
    """The hourly timer: the recent hours, or once a day the deep 48-hour pass."""
    now = now or utcnow()
    if now.astimezone(UTC).hour == ports.settings.reconcile_deep_pass_hour:
        return await queue_slices(ports, DEEP_PASS_SPAN, now)
    return await queue_slices(ports, timedelta(hours=ports.settings.reconcile_recent_hours), now)


async def reconcile_slice(
    ports: ReconcilePorts, item: ControlItem, budget: timedelta | None = None
) -> Report | None:
    """Work one queued slice (raises to be retried by the host). A slice that has aged out of
    Graph's 30 days meanwhile is done: there is nothing left to list.

    Within ``budget`` (hostconfig.run_budget: functionTimeout less a margin): an hour of a
    100,000-call day is ~70 List pages, and the slices an instance works at once share one
    List pace, so at the daily 48-hour pass one slice's share can be a page every 12 s; a slice
    the host timed out would end every invocation on its worker and be retried from the start.
    Out of time, it queues the rest (the same range, from the next link) and returns."""
    if item.since is None or item.until is None:
        raise ValueError("a reconcile slice needs since and until")
    budget = run_budget() if budget is None else budget
    deadline = time.monotonic() + budget.total_seconds()
    sent = permission.sent_now()
    try:
        report = await reconcile(
            ports,
            item.since,
            item.until,
            limiter=list_limiter(),
            resume_from=item.resume_from,
            deadline=deadline,
        )
    except EmptyRange as exc:
        log.info("reconcile slice skipped: %s", exc)
        return None
    except Exception as exc:
        if permission.is_refusal(exc):
            grace = ports.settings.permission_grace_hours
            verdict = await permission.judge(ports.state, exc, grace, sent)
            if verdict is permission.Verdict.OVER:
                # Past the grace the slice is let go, not parked: every hour meets the same 403,
                # so slices would pile up for weeks, and once the role is granted the daily
                # 48-hour pass and the rolling sweep list these hours again.
                log.error(
                    "reconcile slice %s..%s dropped: %s; the daily pass and the sweep list it "
                    "again once the role is granted",
                    _iso(item.since),
                    _iso(item.until),
                    describe(exc),
                )
                return None
            # Inside the grace (a new grant takes about a day to reach the tokens): noted for
            # health, then outlived like a transient fault.
        elif classify_fault(exc) is not Fault.TRANSIENT:
            raise
        # Outlived like a record (the host's five tries would park it within minutes of a
        # Graph incident): the same slice again later, until it ages out of Graph's 30 days.
        # What it had queued already is harmless to queue twice.
        delay = int(slice_again(ports.settings).delay(0))
        await ports.work.put([item], delay_seconds=delay)
        log.warning(
            "reconcile slice %s..%s: %s; again in %d s",
            _iso(item.since),
            _iso(item.until),
            describe(exc),
            delay,
        )
        return None
    await permission.note_success(ports.state)
    if report.resume:
        day, link = report.resume
        # No page in a whole budget: Graph throttled every try (it may for hours); the rest
        # waits like a slice after a transient fault instead of holding an instance at once.
        delay = None if report.pages else int(slice_again(ports.settings).delay(0))
        rest = ControlItem.reconcile_slice(day, item.until, link)
        await ports.work.put([rest], delay_seconds=delay)
        log.info(
            "reconcile slice %s..%s: out of time after %d pages; the rest is queued from %s's "
            "next link%s",
            _iso(item.since),
            _iso(item.until),
            report.pages,
            f"{day:%Y-%m-%d}",
            f", in {delay} s" if delay else "",
        )
    return report


def since_from_text(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``36h``, ``90m`` (that long ago) or an ISO date / date-time -> an aware datetime."""
    now = now or utcnow()
    text = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        return parse_graph_datetime(text if "T" in text else f"{text}T00:00:00Z")
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 7d/36h/90m nor an ISO date"
        ) from None
