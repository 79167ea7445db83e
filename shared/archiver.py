"""Archiving one record from the queue: fetch it complete, write it once, and the retry policy
(404s and long throttles come back later as new messages; the host's last try parks)."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson

from shared.graph import GraphError, NotFound, Throttled, Unauthorized
from shared.ids import normalize_id
from shared.messages import WorkItem, utcnow
from shared.recordfetch import fetch_record
from shared.runtime import Runtime

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
MAX_DELAY = 1800  # seconds between two fetches of a record that is not published yet


@dataclass(frozen=True)
class Archived:
    id: str
    version: int
    blob: str
    written: bool
    pages: int
    bytes: int
    ms: float


async def archive_record(rt: Runtime, item: WorkItem) -> Archived:
    """Fetch every page of the record and upload it if that version is not archived yet.

    The pages stay raw JSON (validated, copied byte for byte): a one-page record is uploaded
    in one request, a longer one written page by page into staged blocks, committed only if
    absent. A fetch that outgrows its time budget or Graph's per-record limit raises
    ``Paused`` (a Throttled) after a checkpoint, and the next attempt continues from there
    (shared/recordfetch.py). Nothing is committed before every page is fetched and the
    version checked, so a partial record never reaches the archive.
    """
    started = time.perf_counter()
    fetched = await fetch_record(rt, item.id)
    result = Archived(
        id=normalize_id(item.id),
        version=int(fetched.head.get("version", 0)),
        blob=fetched.blob,
        written=fetched.written,
        pages=fetched.pages,
        bytes=fetched.bytes,
        ms=(time.perf_counter() - started) * 1000,
    )
    log.info(
        "%s %s v%d: %d pages, %d sessions, %d participants, %d bytes, %.0f ms%s -> %s",
        "archived" if result.written else "already archived",
        result.id,
        result.version,
        result.pages,
        fetched.sessions,
        fetched.participants,
        result.bytes,
        result.ms,
        f" (resumed {fetched.resumed}x)" if fetched.resumed else "",
        result.blob,
    )
    return result


def retry_delay(item: WorkItem, base: int) -> int:
    """Seconds before the next fetch: base, doubling per attempt, capped at MAX_DELAY."""
    return int(min(base * 2 ** min(item.attempt, 20), MAX_DELAY))


async def retry_later(rt: Runtime, item: WorkItem, error: GraphError, at_least: float = 0) -> None:
    """Put the item back with a delay, as a new message (the host's dequeue count is for real
    failures, not for "not published yet" or "slow down"), or park it once a 404 has lasted
    longer than the window. A throttle never parks a record: it says nothing about the record."""
    settings = rt.settings
    first_seen = item.first_seen or utcnow()
    window = timedelta(minutes=settings.retry_window_minutes)
    if isinstance(error, NotFound) and utcnow() - first_seen >= window:
        reason = (
            f"not available after {settings.retry_window_minutes} min: Graph kept answering "
            f"{error.status} (a record older than 30 days, or never published)"
        )
        log.error("record %s moved to poison: %s", item.id, reason)
        await rt.work.put_poison(item, reason, str(error))
        return
    if isinstance(error, NotFound):
        delay = retry_delay(item, settings.retry_base_seconds)
    else:  # a throttle: come back when Graph said, not later than needed
        delay = max(settings.retry_base_seconds, math.ceil(at_least))
    await rt.work.put([item.retried(str(error))], delay_seconds=delay)
    log.info(
        "record %s: Graph %s, fetching again in %d s (attempt %d)",
        item.id,
        error.status,
        delay,
        item.attempt + 1,
    )


@functools.cache
def max_dequeue_count() -> int:
    """host.json's ``extensions.queues.maxDequeueCount`` (the host's default, 5, if unset): on
    that try a failure is parked by us, with its reason, instead of by the host, bare."""
    host = orjson.loads(HOST_JSON.read_bytes())
    return int(host.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5))


async def archive_item(rt: Runtime, item: WorkItem, dequeue_count: int) -> None:
    """Archive the record a queue message names, applying the retry policy.

    404 and long throttles go back on the queue with a delay; other failures raise so the host
    retries, and on the host's last try the item is parked in poison with the reason and the
    last error (instead of the host's bare copy).
    """
    try:
        try:
            await archive_record(rt, item)
        except NotFound as exc:
            await retry_later(rt, item, exc)
        except Throttled as exc:
            await retry_later(rt, item, exc, at_least=exc.retry_after or 0)
    except Exception as exc:
        if isinstance(exc, Unauthorized):
            log.error(
                "Graph refused the app (%d %s): the managed identity%s needs the application "
                "role CallRecords.Read.All on Microsoft Graph (infra/README.md, 'Granting "
                "CallRecords.Read.All by hand')",
                exc.status,
                exc.code,
                f" {rt.settings.client_id}" if rt.settings.client_id else "",
            )
        if dequeue_count < max_dequeue_count():
            raise
        reason = f"failed {dequeue_count} times"
        error = f"{type(exc).__name__}: {exc}"[:500]
        log.error("record %s moved to poison: %s; last error %s", item.id, reason, error)
        await rt.work.put_poison(item, reason, error)
