"""Archiving one record from the queue: fetch it complete, write it once, and the retry policy
(404s and transient faults come back later as new messages, for up to ARCHIVE_GIVE_UP_HOURS;
permanent errors are parked at once; the host's last try parks what nothing classified)."""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from shared import permission
from shared.clock import utcnow
from shared.graph import GraphError, NotFound, Unauthorized
from shared.graph.retry import Fault, RetryLater, classify_fault, not_yet, refused, transient
from shared.ids import normalize_id
from shared.messages import WorkItem
from shared.ports import ArchiverPorts
from shared.recordfetch import fetch_record

log = logging.getLogger(__name__)

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


@dataclass(frozen=True)
class Archived:
    id: str
    version: int
    blob: str
    written: bool
    pages: int
    bytes: int
    ms: float


async def archive_record(ports: ArchiverPorts, item: WorkItem) -> Archived:
    """Fetch every page of the record and upload it if that version is not archived yet.

    The pages stay raw JSON (validated, copied byte for byte): a one-page record is uploaded
    in one request, a longer one written page by page into staged blocks, committed only if
    absent. A fetch that outgrows its time budget or Graph's per-record limit raises
    ``Paused`` (a RetryLater) after a checkpoint, and the next attempt continues from there
    (shared/recordfetch.py). Nothing is committed before every page is fetched and the
    version checked, so a partial record never reaches the archive.
    """
    started = time.perf_counter()
    fetched = await fetch_record(ports, item.id)
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


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


async def park(ports: ArchiverPorts, item: WorkItem, reason: str, error: str) -> None:
    log.error("record %s moved to poison: %s; last error %s", item.id, reason, error)
    await ports.work.put_poison(item, reason, error)


async def retry_later(
    ports: ArchiverPorts, item: WorkItem, error: Exception, at_least: float = 0
) -> None:
    """Put the item back with a delay, as a new message, or park it once it has failed for
    longer than the policy allows (counted from when the record was first seen).

    A new message rather than the host's redelivery: the host's dequeue count (five tries,
    30 s apart) would park a record after 2.5 minutes of outage. If the queue cannot take the
    new message either (storage down), this raises and the host retries the original after
    its visibility timeout: the original is deleted only when the invocation succeeds, so it
    stays in the queue until one of them does, and nothing is lost.
    """
    settings = ports.settings
    first_seen = item.first_seen or utcnow()
    age = (utcnow() - first_seen).total_seconds()
    text = describe(error)
    if isinstance(error, NotFound):
        policy = not_yet(settings)
        if policy.gives_up(item.attempt, age):
            await park(
                ports,
                item,
                f"not available after {settings.retry_window_minutes} min: Graph kept answering "
                f"{error.status} (a record older than 30 days, or never published)",
                str(error),
            )
            return
        delay = int(policy.delay(item.attempt))
    else:
        policy = transient(settings)
        if policy.gives_up(item.attempt, age):
            await park(
                ports,
                item,
                f"gave up after {settings.give_up_hours:g} h of transient failures "
                f"({item.attempt + 1} attempts since {first_seen:%Y-%m-%dT%H:%M:%SZ})",
                text,
            )
            return
        delay = int(policy.delay(item.attempt, math.ceil(at_least) if at_least else None))
    # QueueUnavailable propagates: see the docstring.
    await ports.work.put([item.retried(text)], delay_seconds=delay)
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


async def retry_refused(
    ports: ArchiverPorts, item: WorkItem, error: Exception, verdict: permission.Verdict
) -> None:
    """A 403 inside the permission grace period: back on the queue with the refusal's long
    back-off, never parked (shared/permission.py); the grace, not the give-up time, bounds it.
    A stale 403 (sent before another read here succeeded: the grant has arrived) is tried
    again after the transient back-off's first step, whatever the record's age."""
    if verdict is permission.Verdict.STALE:
        delay = int(transient(ports.settings).delay(0))
    else:
        delay = int(refused(ports.settings).delay(item.attempt))
    await ports.work.put([item.retried(describe(error))], delay_seconds=delay)
    log.warning(
        "record %s: Graph 403 (%s), fetching again in %d s (attempt %d)",
        item.id,
        "sent before the grant arrived"
        if verdict is permission.Verdict.STALE
        else f"no {permission.REQUIRED_ROLE} yet",
        delay,
        item.attempt + 1,
    )


@functools.cache
def max_dequeue_count() -> int:
    """host.json's ``extensions.queues.maxDequeueCount`` (the host's default, 5, if unset): on
    that try a failure is parked by us, with its reason, instead of by the host, bare."""
    host = orjson.loads(HOST_JSON.read_bytes())
    return int(host.get("extensions", {}).get("queues", {}).get("maxDequeueCount", 5))


async def archive_item(ports: ArchiverPorts, item: WorkItem, dequeue_count: int) -> None:
    """Archive the record a queue message names, applying the retry policy (classify_fault)."""
    sent = permission.sent_now()
    try:
        result = await archive_record(ports, item)
    except Exception as exc:
        await settle(ports, item, exc, dequeue_count, sent)
        return
    await permission.note_success(ports.state)
    if result.written:
        await ports.activity.archived(result.blob)


async def settle(
    ports: ArchiverPorts,
    item: WorkItem,
    exc: Exception,
    dequeue_count: int,
    sent: float | None = None,
) -> None:
    """What a failed attempt (begun at ``sent``) leads to: later, now parked, or the host's
    retry."""
    if permission.is_refusal(exc):
        grace = ports.settings.permission_grace_hours
        verdict = await permission.judge(ports.state, exc, grace, sent)
        if verdict is not permission.Verdict.OVER:
            await retry_refused(ports, item, exc, verdict)
            return
    fault = classify_fault(exc)
    if fault is Fault.NOT_YET or fault is Fault.TRANSIENT:
        retry_after = exc.retry_after if isinstance(exc, GraphError | RetryLater) else None
        await retry_later(ports, item, exc, at_least=retry_after or 0)
        return
    if isinstance(exc, Unauthorized):
        log.error(
            "Graph refused the app (%d %s): the managed identity%s needs the application "
            "role CallRecords.Read.All on Microsoft Graph (infra/README.md, 'Granting "
            "CallRecords.Read.All by hand')",
            exc.status,
            exc.code,
            f" {ports.settings.client_id}" if ports.settings.client_id else "",
        )
    if fault is Fault.PERMANENT:
        status = exc.status if isinstance(exc, GraphError) else "?"
        await park(ports, item, f"permanent error: Graph answered {status}", describe(exc))
        return
    if dequeue_count < max_dequeue_count():
        raise exc
    await park(ports, item, f"failed {dequeue_count} times", describe(exc))
