"""Reconciliation and backfill: list what Graph has, queue what the archive lacks.

Notifications are at-least-once but can still be lost (an expired or removed subscription,
an endpoint in Graph's "drop" state). Listing callRecords by startDateTime and comparing
with the archive closes those gaps. The List API allows 40 requests / 20 s per app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.archive import blob_name, parse_graph_datetime
from shared.graph import Throttled
from shared.ids import is_guid
from shared.messages import WorkItem, utcnow
from shared.runtime import Runtime

log = logging.getLogger("reconcile")

RETENTION = timedelta(days=30)
DEFAULT_WINDOW = timedelta(hours=48)
LIST_LIMIT = 40  # requests
LIST_PERIOD = 20.0  # seconds
QUEUE_CHUNK = 100


class RateLimiter:
    """A sliding window: at most ``limit`` calls in any ``period`` seconds."""

    def __init__(self, limit: int = LIST_LIMIT, period: float = LIST_PERIOD) -> None:
        self.limit, self.period = limit, period
        self.calls: deque[float] = deque()

    async def wait(self) -> None:
        now = time.monotonic()
        while self.calls and now - self.calls[0] >= self.period:
            self.calls.popleft()
        if len(self.calls) >= self.limit:
            await asyncio.sleep(self.period - (now - self.calls[0]))
            self.calls.popleft()
        self.calls.append(time.monotonic())


@dataclass
class Report:
    listed: int = 0
    queued: int = 0
    archived: int = 0
    pages: int = 0
    since: datetime | None = None
    until: datetime | None = None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clamp_window(since: datetime, until: datetime | None) -> tuple[datetime, datetime]:
    """Graph keeps 30 days: an older start is raised to that, with a note in the log."""
    now = utcnow()
    until = min(until or now, now)
    oldest = now - RETENTION + timedelta(minutes=5)
    if since < oldest:
        log.info("window starts %s; Graph keeps 30 days, starting at %s", _iso(since), _iso(oldest))
        since = oldest
    if since >= until:
        raise ValueError(f"empty window: {_iso(since)} is not before {_iso(until)}")
    return since, until


async def archived_names(rt: Runtime, since: datetime, until: datetime) -> set[str]:
    """Every blob name in the day folders the window touches (one listing per day)."""
    names: set[str] = set()
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= until:
        async for blob in rt.archive.container.list_blobs(name_starts_with=f"{day:%Y/%m/%d}/"):
            names.add(blob.name)
        day += timedelta(days=1)
    return names


async def list_records(rt: Runtime, since: datetime, until: datetime, limiter: RateLimiter):
    """Yield pages of callRecords with since <= startDateTime < until, pacing every request."""
    flt = f"startDateTime ge {_iso(since)} and startDateTime lt {_iso(until)}"
    url: str | None = rt.graph.url(f"communications/callRecords?$filter={flt}")
    while url:
        await limiter.wait()
        try:
            page = await rt.graph.get(url)
        except Throttled as exc:
            delay = min(exc.retry_after if exc.retry_after is not None else 10.0, 120.0)
            log.warning("List callRecords throttled; waiting %.0f s", delay)
            await asyncio.sleep(delay)
            continue
        yield page.get("value", [])
        url = page.get("@odata.nextLink")


def _missing(item: Any, names: set[str]) -> str | None:
    """The id of a listed record whose listed version is not archived, else None."""
    if not isinstance(item, dict) or not is_guid(item.get("id")):
        return None
    try:
        name = blob_name(item)
    except ValueError:
        # No version in the listing: any archived version counts as present.
        start = parse_graph_datetime(item.get("startDateTime"))
        prefix = f"{start:%Y/%m/%d}/{str(item['id']).lower()}/"
        return None if any(n.startswith(prefix) for n in names) else str(item["id"]).lower()
    return None if name in names else str(item["id"]).lower()


async def reconcile(
    rt: Runtime,
    since: datetime,
    until: datetime | None = None,
    source: str = "reconcile",
    progress: Callable[[Report], None] | None = None,
    limiter: RateLimiter | None = None,
) -> Report:
    """Queue every record in the window whose listed version has no blob yet."""
    since, until = clamp_window(since, until)
    report = Report(since=since, until=until)
    names = await archived_names(rt, since, until)
    limiter = limiter or RateLimiter()
    async for items in list_records(rt, since, until, limiter):
        report.pages += 1
        report.listed += len(items)
        missing = [rid for rid in (_missing(i, names) for i in items) if rid]
        report.archived += len(items) - len(missing)
        for start in range(0, len(missing), QUEUE_CHUNK):
            chunk = missing[start : start + QUEUE_CHUNK]
            report.queued += await rt.work.put(WorkItem.new(rid, source) for rid in chunk)
        if progress:
            progress(report)
    log.info(
        "%s %s..%s: %d listed, %d already archived, %d queued (%d pages)",
        source,
        _iso(since),
        _iso(until),
        report.listed,
        report.archived,
        report.queued,
        report.pages,
    )
    return report


async def reconcile_recent(rt: Runtime, hours: int | None = None) -> Report:
    window = timedelta(hours=hours) if hours else DEFAULT_WINDOW
    return await reconcile(rt, utcnow() - window)


def since_from_text(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``36h``, ``90m`` or an ISO date-time -> an aware datetime."""
    now = now or utcnow()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        return parse_graph_datetime(text if "T" in text else f"{text}T00:00:00Z")
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 7d/36h/90m nor an ISO date"
        ) from None
