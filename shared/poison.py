"""The poison queue, read for people: why each message was parked, and putting it back.

Messages get there three ways, all base64 like the main queue: the archiver parks a WorkItem
with ``reason`` and ``lastError`` when it gives up; a message that is not a WorkItem at all is
parked as ``{"reason", "body"}``; the host copies a message verbatim after maxDequeueCount
failures (a plain WorkItem or ControlItem JSON, no reason).

Every parked message is kept until a person deals with it: ours are sent with no expiry, and
the host's copies (which the Functions host sends with the queue's default 7-day time to live,
and offers no setting for) are re-sent without one by ``keep_forever``, run hourly.

Replaying leases each message (a visibility timeout), queues the fresh copy on the main queue,
and only then deletes the poison message: a run that dies midway loses nothing, at worst a
record is fetched twice (harmless, the archive writes each version once).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError

from shared.clock import utcnow
from shared.jsonvalues import as_object
from shared.messages import ControlItem, MessageError, WorkItem, parse_message
from shared.ports import RawQueuePort, WorkPort
from shared.workqueue import QueueUnavailable

LEASE_SECONDS = 300  # how long a message stays invisible while this run looks at it
PAGE = 32  # the most messages one receive returns
HOST_PARKED = "failed maxDequeueCount times (moved by the host, no reason recorded)"


@dataclass(frozen=True)
class Parked:
    """One poison message, understood: the item (None when malformed) and why it is there."""

    message_id: str
    pop_receipt: str | None
    inserted_on: datetime | None
    item: WorkItem | ControlItem | None
    reason: str
    last_error: str | None = None
    body: str | None = None  # the start of a malformed original

    @property
    def malformed(self) -> bool:
        return self.item is None

    @property
    def label(self) -> str:
        if isinstance(self.item, WorkItem):
            return self.item.id
        if isinstance(self.item, ControlItem):
            return f"control:{self.item.action}"
        return "(malformed)"

    def age(self, now: datetime | None = None) -> timedelta | None:
        """How long it has been in the poison queue."""
        if self.inserted_on is None:
            return None
        return (now or utcnow()) - self.inserted_on.astimezone(UTC)


def understand(
    content: str | bytes,
) -> tuple[WorkItem | ControlItem | None, str, str | None, str | None]:
    """(item, reason, last error, malformed body) of one poison message as stored (base64)."""
    text = content.decode("ascii", "replace") if isinstance(content, bytes) else content
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None, "not base64: no queue trigger can read it", None, text[:200]
    try:
        data = as_object(orjson.loads(raw))
    except orjson.JSONDecodeError:
        data = None
    if data is not None and "body" in data and "id" not in data and "control" not in data:
        return None, str(data.get("reason") or "malformed"), None, str(data["body"])[:200]
    try:
        item = parse_message(raw)
    except MessageError as exc:
        return None, f"unreadable: {exc}", None, raw[:200].decode("utf-8", "replace")
    if isinstance(item, ControlItem):
        return item, HOST_PARKED, None, None
    return item, item.reason or HOST_PARKED, item.last_error, None


def parked(message: Any) -> Parked:
    item, reason, error, body = understand(message.content or "")
    return Parked(message.id, message.pop_receipt, message.inserted_on, item, reason, error, body)


# The service reports a message sent with time to live -1 as expiring on 9999-12-31.
FOREVER = datetime(9000, 1, 1, tzinfo=UTC)


def expires(message: Any) -> bool:
    """Whether a queue message (as received or peeked) will expire by itself."""
    expires_on: datetime | None = message.expires_on
    return expires_on is not None and expires_on.astimezone(UTC) < FOREVER


async def keep_forever(
    work: WorkPort, poison: RawQueuePort, lease_seconds: int = 60
) -> tuple[int, int]:
    """Re-send every poison message that would expire (the host's copies) without an expiry,
    then delete the original; returns (messages seen, messages re-sent).

    ``poison`` must not decode (as for ``replay``); the copy goes through ``work.repark``,
    which encodes, so the stored content stays the same base64 text. The copy is sent before
    the original is deleted: a failure in between leaves two copies, never none.
    """
    seen: set[str] = set()
    copies: set[str] = set()  # the messages this run sent: not looked at again
    kept: list[Any] = []
    resent = 0
    while True:
        batch = [
            m
            async for m in poison.receive_messages(
                messages_per_page=PAGE, max_messages=PAGE, visibility_timeout=lease_seconds
            )
        ]
        fresh = [m for m in batch if m.id not in seen and m.id not in copies]
        kept.extend(m for m in batch if m.id in copies)
        if not fresh:
            break
        for message in fresh:
            seen.add(message.id)
            if not expires(message):
                kept.append(message)
                continue
            text = str(message.content or "")
            try:
                body = base64.b64decode(text, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                reason = "not base64: no queue trigger can read it"
                body = orjson.dumps({"reason": reason, "body": text[:2000]}).decode()
            copies.add(await work.repark(body))
            await poison.delete_message(message.id, message.pop_receipt)
            resent += 1
    for message in kept:  # visible again now, not when the lease ends
        try:
            await poison.update_message(message.id, message.pop_receipt, visibility_timeout=0)
        except AzureError:
            pass
    return len(seen), resent


@dataclass
class ReplaySummary:
    seen: int = 0
    replayed: int = 0
    dropped: int = 0
    malformed_kept: int = 0
    skipped: int = 0  # not among the requested ids
    failed: int = 0
    found_ids: set[str] = field(default_factory=set[str])


async def replay(
    work: WorkPort,
    poison: RawQueuePort,
    *,
    dry_run: bool = False,
    ids: set[str] | None = None,
    drop_malformed: bool = False,
    report: Callable[[Parked, str], None] | None = None,
    lease_seconds: int = LEASE_SECONDS,
) -> ReplaySummary:
    """Go through every poison message once; replay the ones asked for (all, or ``ids``).

    ``poison`` must not decode (storage.queue_client(..., decode=False)), so one message
    that is not base64 is reported instead of failing the whole receive. ``report`` is
    called with each message and what happened to it. Messages left in place are made
    visible again at the end.
    """
    summary = ReplaySummary()
    leased: list[Parked] = []
    seen: set[str] = set()
    while True:
        batch = [
            parked(m)
            async for m in poison.receive_messages(
                messages_per_page=PAGE, max_messages=PAGE, visibility_timeout=lease_seconds
            )
        ]
        fresh = [p for p in batch if p.message_id not in seen]
        if not fresh:  # empty, or the first leases ran out and we came round again
            break
        for entry in fresh:
            seen.add(entry.message_id)
            summary.seen += 1
            outcome = await _handle(work, poison, entry, dry_run, ids, drop_malformed, summary)
            if outcome.startswith(("kept", "skipped", "would", "failed")):
                leased.append(entry)
            if report:
                report(entry, outcome)
    for entry in leased:  # back to visible now, not in lease_seconds
        try:
            await poison.update_message(entry.message_id, entry.pop_receipt, visibility_timeout=0)
        except AzureError:
            pass  # the lease ran out already, or it is gone: visible or absent either way
    return summary


async def _handle(
    work: WorkPort,
    poison: RawQueuePort,
    entry: Parked,
    dry_run: bool,
    ids: set[str] | None,
    drop_malformed: bool,
    summary: ReplaySummary,
) -> str:
    item = entry.item
    if item is None:
        if not drop_malformed:
            summary.malformed_kept += 1
            return "kept (malformed)"
        if dry_run:
            return "would drop"
        await poison.delete_message(entry.message_id, entry.pop_receipt)
        summary.dropped += 1
        return "dropped"
    if isinstance(item, WorkItem):
        summary.found_ids.add(item.id)
    if ids is not None and not (isinstance(item, WorkItem) and item.id in ids):
        summary.skipped += 1
        return "skipped"
    if dry_run:
        return "would replay"
    fresh = item.replayed() if isinstance(item, WorkItem) else item
    try:
        await work.put([fresh])
    except QueueUnavailable as exc:
        summary.failed += 1
        return f"failed: {exc}"
    try:
        await poison.delete_message(entry.message_id, entry.pop_receipt)
    except AzureError as exc:
        # Queued but not deleted: it will be listed again, and replaying it twice is harmless.
        summary.replayed += 1
        return f"replayed (not deleted from poison: {type(exc).__name__})"
    summary.replayed += 1
    return "replayed"
