"""Archiving one record from the queue: fetch it complete, write it once, and the retry policy
(404s and transient faults come back later as new messages, for up to ARCHIVE_GIVE_UP_HOURS;
permanent errors are parked at once; the host's last try parks what nothing classified)."""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

import httpx
import orjson
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from shared import permission
from shared.graph import GraphError, NotFound, Throttled, Unauthorized, Unreachable
from shared.ids import normalize_id
from shared.messages import WorkItem, utcnow
from shared.recordfetch import fetch_record
from shared.runtime import Runtime
from shared.workqueue import QueueUnavailable

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
MAX_DELAY = 1800  # seconds between two fetches of a record that is not published yet
MAX_QUEUE_DELAY = 7 * 24 * 3600  # the longest visibility timeout a queue message can get
TRANSIENT_STATUSES = (408, 429)


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


class Fault(StrEnum):
    """How the retry policy treats a failure."""

    NOT_YET = "not yet available"  # Graph 404: published up to 150 min after the call
    TRANSIENT = "transient"  # outlived: back on the queue with a backoff, for up to a day
    PERMANENT = "permanent"  # no retry can help: parked at once with the reason
    UNKNOWN = "unknown"  # not classified (a bug?): the host's tries, then parked


def classify(exc: BaseException) -> Fault:
    """Sort a failure of one archiving attempt into the policy's classes.

    Transient: Graph 5xx, 408 and 429 (Throttled covers 429/503/504 with Retry-After),
    network errors left after the client's in-place tries, token endpoint failures (the
    credential raises ClientAuthenticationError or its CredentialUnavailableError subclass
    for an unreachable or failing endpoint), and storage errors (no answer, or 5xx/408/429).
    Permanent: any other Graph 4xx; a 401 reaches here only after the client tried a fresh
    token, a 403 means the app role is missing.
    """
    if isinstance(exc, NotFound):
        return Fault.NOT_YET
    if isinstance(exc, Throttled | Unreachable):
        return Fault.TRANSIENT
    if isinstance(exc, GraphError):
        transient = exc.status >= 500 or exc.status in TRANSIENT_STATUSES
        return Fault.TRANSIENT if transient else Fault.PERMANENT
    if isinstance(exc, QueueUnavailable | ClientAuthenticationError):
        return Fault.TRANSIENT
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        transient = status is None or status >= 500 or status in TRANSIENT_STATUSES
        return Fault.TRANSIENT if transient else Fault.UNKNOWN
    if isinstance(exc, AzureError | OSError | TimeoutError | httpx.HTTPError):
        return Fault.TRANSIENT
    return Fault.UNKNOWN


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def retry_delay(item: WorkItem, base: int, cap: int = MAX_DELAY) -> int:
    """Seconds before fetching a not-yet-published record again: base, doubling per attempt,
    capped."""
    return int(min(base * 2 ** min(item.attempt, 20), cap, MAX_QUEUE_DELAY))


def backoff(item: WorkItem, base: int, cap: int, at_least: float = 0) -> int:
    """Seconds before the next try after a transient fault: exponential with full jitter
    (uniform between 0 and base * 2^attempt, capped), so instances that failed together
    during an outage do not all come back in the same second; never less than one second or
    the Retry-After Graph asked for."""
    ceiling = min(base * 2 ** min(item.attempt, 30), cap, MAX_QUEUE_DELAY)
    jittered = random.uniform(0, ceiling)  # noqa: S311 (spreading retries, not security)
    return int(min(max(1, jittered, math.ceil(at_least)), MAX_QUEUE_DELAY))


async def park(rt: Runtime, item: WorkItem, reason: str, error: str) -> None:
    log.error("record %s moved to poison: %s; last error %s", item.id, reason, error)
    await rt.work.put_poison(item, reason, error)


async def retry_later(rt: Runtime, item: WorkItem, error: Exception, at_least: float = 0) -> None:
    """Put the item back with a delay, as a new message, or park it once it has failed for
    longer than the policy allows (counted from when the record was first seen).

    A new message rather than the host's redelivery: the host's dequeue count (five tries,
    30 s apart) would park a record after 2.5 minutes of outage. If the queue cannot take the
    new message either (storage down), this raises and the host retries the original after
    its visibility timeout: the original is deleted only when the invocation succeeds, so it
    stays in the queue until one of them does, and nothing is lost.
    """
    settings = rt.settings
    first_seen = item.first_seen or utcnow()
    age = utcnow() - first_seen
    text = describe(error)
    if isinstance(error, NotFound):
        if age >= timedelta(minutes=settings.retry_window_minutes):
            await park(
                rt,
                item,
                f"not available after {settings.retry_window_minutes} min: Graph kept answering "
                f"{error.status} (a record older than 30 days, or never published)",
                str(error),
            )
            return
        delay = retry_delay(item, settings.retry_base_seconds, settings.retry_max_seconds)
    else:
        if age >= timedelta(hours=settings.give_up_hours):
            await park(
                rt,
                item,
                f"gave up after {settings.give_up_hours:g} h of transient failures "
                f"({item.attempt + 1} attempts since {first_seen:%Y-%m-%dT%H:%M:%SZ})",
                text,
            )
            return
        delay = backoff(item, settings.retry_base_seconds, settings.retry_max_seconds, at_least)
    # QueueUnavailable propagates: see the docstring.
    await rt.work.put([item.retried(text)], delay_seconds=delay)
    if isinstance(error, GraphError):
        cause = f"Graph {error.status or error.code}"  # e.g. Graph 503, Graph ReadTimeout
    else:
        cause = type(error).__name__  # a storage or token endpoint failure
    log.info(
        "record %s: %s, fetching again in %d s (attempt %d)",
        item.id,
        cause,
        delay,
        item.attempt + 1,
    )


async def retry_refused(rt: Runtime, item: WorkItem, error: Exception) -> None:
    """A 403 inside the permission grace period: back on the queue with the transient
    back-off, never parked (shared/permission.py); the grace, not the give-up time, bounds it."""
    settings = rt.settings
    delay = backoff(item, settings.retry_base_seconds, settings.retry_max_seconds)
    await rt.work.put([item.retried(describe(error))], delay_seconds=delay)
    log.warning(
        "record %s: Graph 403 (no %s yet), fetching again in %d s (attempt %d)",
        item.id,
        permission.REQUIRED_ROLE,
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
    """Archive the record a queue message names, applying the retry policy (classify)."""
    try:
        result = await archive_record(rt, item)
    except Exception as exc:
        await settle(rt, item, exc, dequeue_count)
        return
    await permission.note_success(rt.state)
    if result.written:
        await rt.activity.archived(result.blob)


async def settle(rt: Runtime, item: WorkItem, exc: Exception, dequeue_count: int) -> None:
    """What a failed attempt leads to: later, now parked, or the host's retry."""
    if await permission.within_grace(rt.state, exc, rt.settings.permission_grace_hours):
        await retry_refused(rt, item, exc)
        return
    fault = classify(exc)
    if fault is Fault.NOT_YET or fault is Fault.TRANSIENT:
        retry_after = exc.retry_after if isinstance(exc, GraphError) else None
        await retry_later(rt, item, exc, at_least=retry_after or 0)
        return
    if isinstance(exc, Unauthorized):
        log.error(
            "Graph refused the app (%d %s): the managed identity%s needs the application "
            "role CallRecords.Read.All on Microsoft Graph (infra/README.md, 'Granting "
            "CallRecords.Read.All by hand')",
            exc.status,
            exc.code,
            f" {rt.settings.client_id}" if rt.settings.client_id else "",
        )
    if fault is Fault.PERMANENT:
        status = exc.status if isinstance(exc, GraphError) else "?"
        await park(rt, item, f"permanent error: Graph answered {status}", describe(exc))
        return
    if dequeue_count < max_dequeue_count():
        raise exc
    await park(rt, item, f"failed {dequeue_count} times", describe(exc))
