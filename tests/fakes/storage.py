"""In-memory storage ports: the archive (write-once blobs, staged blocks), the state store
(ETag-conditional JSON), the work queue and its poison queue, and the activity log.

They keep the rules the real ones rely on (Azure Storage's): a blob is written only if
absent, staged blocks are invisible until committed and can be lost (``lose_blocks``, as
Azure discards uncommitted blocks after 7 days,
learn.microsoft.com/rest/api/storageservices/put-block-list), a conditional save fails on a
changed ETag; and they count what happened, for tests to assert on.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from shared.activity import Activity
from shared.blobstore import StaleBlocks, blob_name
from shared.clock import utcnow
from shared.messages import ControlItem, WorkItem, parse_message
from shared.settings import Settings
from shared.workqueue import Message


class FakeStagedBlob:
    def __init__(self, archive: FakeArchive, name: str, block_ids: list[str], size: int) -> None:
        self.archive, self.name = archive, name
        self.block_ids = list(block_ids)
        self.size = size
        self.buffer = bytearray()

    @property
    def total(self) -> int:
        return self.size + len(self.buffer)

    async def add(self, data: bytes) -> None:
        self.buffer += data

    async def flush(self) -> None:
        if not self.buffer:
            return
        block_id = uuid.uuid4().hex
        self.archive.blocks[block_id] = bytes(self.buffer)
        self.block_ids.append(block_id)
        self.size += len(self.buffer)
        self.buffer = bytearray()

    async def exists(self) -> bool:
        return self.name in self.archive.blobs

    async def commit(self, metadata: dict[str, str] | None = None) -> bool:
        await self.flush()
        if any(b not in self.archive.blocks for b in self.block_ids):
            raise StaleBlocks(f"{self.name}: staged blocks are gone")
        data = b"".join(self.archive.blocks[b] for b in self.block_ids)
        return await self.archive.write_named(self.name, data, metadata or {})


@dataclass
class FakeArchive:
    blobs: dict[str, bytes] = field(default_factory=dict[str, bytes])
    metadata: dict[str, dict[str, str]] = field(default_factory=dict[str, dict[str, str]])
    blocks: dict[str, bytes] = field(default_factory=dict[str, bytes])
    refused_writes: int = 0

    def staged(self, record: dict[str, Any], block_ids: list[str], size: int) -> FakeStagedBlob:
        return FakeStagedBlob(self, blob_name(record), block_ids, size)

    async def write_named(self, name: str, data: bytes, metadata: dict[str, str]) -> bool:
        if name in self.blobs:
            self.refused_writes += 1
            return False
        self.blobs[name] = data
        self.metadata[name] = dict(metadata)
        return True

    async def names(self, prefix: str) -> AsyncIterator[str]:
        for name in sorted(self.blobs):
            if name.startswith(prefix):
                yield name

    async def any_blob(self) -> bool:
        return bool(self.blobs)

    def lose_blocks(self) -> None:
        self.blocks.clear()

    def document(self, name: str) -> Any:
        return orjson.loads(self.blobs[name])


@dataclass
class FakeState:
    values: dict[str, tuple[dict[str, Any], str]] = field(
        default_factory=dict[str, tuple[dict[str, Any], str]]
    )
    locks: dict[str, asyncio.Lock] = field(default_factory=dict[str, asyncio.Lock])
    # Let other tasks run during each read and write, as during a request to Azure Storage:
    # callers working at once then read the same ETag, as instances do.
    interleave: bool = False

    async def _turn(self) -> None:
        if self.interleave:
            await asyncio.sleep(0)

    async def load(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        await self._turn()
        if name not in self.values:
            return None, None
        value, etag = self.values[name]
        return orjson.loads(orjson.dumps(value)), etag

    async def save(self, name: str, value: dict[str, Any], etag: str | None = None) -> str | None:
        await self._turn()
        current = self.values.get(name)
        if etag == "" and current is not None:
            return None
        if etag and (current is None or current[1] != etag):
            return None
        new = uuid.uuid4().hex
        self.values[name] = (orjson.loads(orjson.dumps(value)), new)
        return new

    async def delete(self, name: str) -> None:
        await self._turn()
        self.values.pop(name, None)

    def exclusive(self, name: str) -> asyncio.Lock:
        """One holder at a time, as the blob lease is across instances."""
        return self.locks.setdefault(name, asyncio.Lock())


@dataclass
class Queued:
    item: WorkItem | ControlItem
    delay_seconds: int | None
    inserted_on: datetime = field(default_factory=utcnow)


@dataclass
class PeekedMessage:
    """A poison message as a peek returns it (the fields status reads)."""

    content: str
    inserted_on: datetime
    expires_on: datetime | None


@dataclass
class RawMessage:
    """A queue message as a client that does not decode sees it (content: base64 text)."""

    id: str
    content: str
    inserted_on: datetime
    expires_on: datetime | None  # None: never (sent with time to live -1)
    pop_receipt: str | None = None
    leased_until: float = 0.0


@dataclass
class FakeRawQueue:
    """A queue read without decoding, with leases (visibility timeouts) and pop receipts as
    Azure Queue Storage has them (learn.microsoft.com/rest/api/storageservices/get-messages)."""

    messages: list[RawMessage] = field(default_factory=list[RawMessage])

    def send(self, text: str, expires_on: datetime | None = None) -> str:
        message = RawMessage(
            uuid.uuid4().hex, base64.b64encode(text.encode()).decode(), utcnow(), expires_on
        )
        self.messages.append(message)
        return message.id

    async def receive_messages(
        self,
        *,
        messages_per_page: int | None = None,
        visibility_timeout: int | None = None,
        max_messages: int | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[RawMessage]:
        now = time.monotonic()
        visible = [m for m in self.messages if m.leased_until <= now][: max_messages or 32]
        for message in visible:
            message.leased_until = now + (visibility_timeout or 30)
            message.pop_receipt = uuid.uuid4().hex
            yield message

    def _find(self, message_id: Any, pop_receipt: str | None) -> RawMessage:
        (found,) = [m for m in self.messages if m.id == message_id]
        assert found.pop_receipt == pop_receipt, "a stale pop receipt"
        return found

    async def delete_message(
        self, message: Any, pop_receipt: str | None = None, **kwargs: Any
    ) -> None:
        self.messages.remove(self._find(message, pop_receipt))

    async def update_message(
        self, message: Any, pop_receipt: str | None = None, content: Any = None, **kwargs: Any
    ) -> Any:
        found = self._find(message, pop_receipt)
        found.leased_until = time.monotonic() + float(kwargs.get("visibility_timeout") or 0)
        return found


@dataclass
class FakeWork:
    queued: list[Queued] = field(default_factory=list[Queued])
    poison: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    raw_poison: FakeRawQueue = field(default_factory=FakeRawQueue)  # the same, as stored
    unavailable: bool = False

    async def put(self, items: Iterable[Message], delay_seconds: int | None = None) -> int:
        from shared.workqueue import QueueUnavailable

        batch = list(items)
        if self.unavailable:
            raise QueueUnavailable(f"{len(batch)} of {len(batch)} messages not queued")
        for item in batch:
            self.queued.append(Queued(parse_message(item.to_json()), delay_seconds))
        return len(batch)

    async def put_poison(self, item: WorkItem, reason: str, error: str | None = None) -> None:
        self.poison.append({"item": item, "reason": reason, "error": error, "at": utcnow()})
        self.raw_poison.send(item.poisoned(reason, error).to_json())

    async def put_raw_poison(self, body: bytes, reason: str) -> None:
        self.poison.append({"body": body, "reason": reason, "at": utcnow()})
        text = body[:2000].decode("utf-8", errors="replace")
        self.raw_poison.send(orjson.dumps({"reason": reason, "body": text}).decode())

    async def repark(self, body: str) -> str:
        return self.raw_poison.send(body)

    async def depth(self) -> int:
        return len(self.queued)

    async def oldest_inserted(self) -> datetime | None:
        return min((q.inserted_on for q in self.queued), default=None)

    async def poison_depth(self) -> int:
        return len(self.poison)

    def take(self) -> list[Queued]:
        """Everything queued so far, emptying the queue."""
        out, self.queued = self.queued, []
        return out


@dataclass
class FakeActivity:
    lines: list[tuple[datetime, str]] = field(default_factory=list[tuple[datetime, str]])

    async def archived(self, blob_name: str, at: datetime | None = None) -> None:
        self.lines.append((at or utcnow(), blob_name))

    async def recent(self, now: datetime | None = None, hours: int = 24) -> Activity:
        now = now or utcnow()
        recent = [
            (at, name) for at, name in self.lines if (now - at).total_seconds() <= hours * 3600
        ]
        if not recent:
            return Activity(0, None, None)
        at, name = recent[-1]
        return Activity(len(recent), name, at)


@dataclass
class FakePorts:
    """Every port, in memory: what a domain function is given in a functional test (the
    Runtime plays this part in the app)."""

    settings: Settings
    graph: Any
    archive: FakeArchive = field(default_factory=FakeArchive)
    state: FakeState = field(default_factory=FakeState)
    work: FakeWork = field(default_factory=FakeWork)
    activity: FakeActivity = field(default_factory=FakeActivity)
    large_fetches: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))

    async def peek_poison(self, count: int) -> list[Any]:
        return [
            PeekedMessage(str(p.get("reason")), p["at"], None) for p in self.work.poison[:count]
        ]
