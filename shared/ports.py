"""The ports: what the domain modules need of Graph and of storage, as Protocols.

The composition root (shared/runtime.py, used by shared/handlers.py and cli.py) builds the
real ones (GraphClient, ArchiveWriter, StateStore, WorkQueue, ActivityLog); tests/fakes/
holds in-memory ones, so the domain's rules can be tested without Azurite or the simulator.
A domain function takes the ports it uses: each module states them as a small Protocol of
read-only members (``FetchPorts``, ``ReconcilePorts``, ...), which the Runtime satisfies and
so does a plain dataclass of fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from shared.activity import Activity
from shared.graph.client import RecordLimits
from shared.messages import WorkItem
from shared.settings import Settings
from shared.workqueue import Message


class GraphPort(Protocol):
    """Microsoft Graph (shared/graph/client.py's GraphClient)."""

    base_url: str

    async def request(
        self, method: str, url: str, json: Any = None, parse: Callable[[bytes], Any] = ...
    ) -> Any: ...

    async def get(self, url: str) -> dict[str, Any]: ...

    def url(self, path: str) -> str: ...

    def record_limits(self, record_id: str) -> RecordLimits: ...

    def record_url(self, record_id: str) -> str: ...

    def participants_url(self, record_id: str) -> str: ...

    def version_url(self, record_id: str) -> str: ...


class StagedPort(Protocol):
    """One record's blob, written block by block (shared/blobstore.py's StagedBlob)."""

    name: str
    block_ids: list[str]
    size: int

    @property
    def total(self) -> int: ...

    async def add(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def exists(self) -> bool: ...

    async def commit(self, metadata: dict[str, str] | None = None) -> bool: ...


class ArchivePort(Protocol):
    """The archive: write-once blobs (shared/blobstore.py's ArchiveWriter)."""

    def staged(self, record: dict[str, Any], block_ids: list[str], size: int) -> StagedPort: ...

    async def write_named(self, name: str, data: bytes, metadata: dict[str, str]) -> bool: ...

    def names(self, prefix: str) -> AsyncIterator[str]: ...

    async def any_blob(self) -> bool: ...


class StatePort(Protocol):
    """The app's own small JSON blobs, ETag-conditional (shared/blobstore.py's StateStore)."""

    async def load(self, name: str) -> tuple[dict[str, Any] | None, str | None]: ...

    async def save(
        self, name: str, value: dict[str, Any], etag: str | None = None
    ) -> str | None: ...

    async def delete(self, name: str) -> None: ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one instance of the app at a time (a blob lease on ``name``)."""
        ...


class WorkPort(Protocol):
    """The work queue and its poison queue (shared/workqueue.py's WorkQueue)."""

    async def depth(self) -> int: ...

    async def oldest_inserted(self) -> datetime | None: ...

    async def poison_depth(self) -> int: ...

    async def repark(self, body: str) -> str:
        """Send ``body`` (a poison message's decoded text) to the poison queue again, with no
        expiry; the new message's id."""
        ...

    async def put(self, items: Iterable[Message], delay_seconds: int | None = None) -> int: ...

    async def put_poison(self, item: WorkItem, reason: str, error: str | None = None) -> None: ...

    async def put_raw_poison(self, body: bytes, reason: str) -> None: ...


class RawQueuePort(Protocol):
    """A queue read without decoding (the poison queue as poison.py reads it: one message
    that is not base64 must not fail a whole receive); azure-storage-queue's QueueClient."""

    def receive_messages(
        self,
        *,
        messages_per_page: int | None = None,
        visibility_timeout: int | None = None,
        max_messages: int | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]: ...

    def delete_message(
        self, message: Any, pop_receipt: str | None = None, **kwargs: Any
    ) -> Awaitable[None]: ...

    def update_message(
        self,
        message: Any,
        pop_receipt: str | None = None,
        content: Any = None,
        **kwargs: Any,
    ) -> Awaitable[Any]: ...


class ActivityPort(Protocol):
    """What was archived, per hour (shared/activity.py's ActivityLog)."""

    async def archived(self, blob_name: str, at: datetime | None = None) -> None: ...

    async def recent(self, now: datetime | None = None, hours: int = 24) -> Activity: ...


class GraphJobPorts(Protocol):
    """What every job that reads Graph needs: the settings, Graph, the archive, and the
    state store."""

    @property
    def settings(self) -> Settings: ...

    @property
    def graph(self) -> GraphPort: ...

    @property
    def archive(self) -> ArchivePort: ...

    @property
    def state(self) -> StatePort: ...


class FetchPorts(GraphJobPorts, Protocol):
    """What fetching and archiving one record needs (shared/recordfetch.py): also the
    per-instance bound on large fetches."""

    @property
    def large_fetches(self) -> asyncio.Semaphore: ...


class ArchiverPorts(FetchPorts, Protocol):
    """What the queue worker needs for a record (shared/archiver.py): the fetch, the queue
    to retry or park on, and the activity log."""

    @property
    def work(self) -> WorkPort: ...

    @property
    def activity(self) -> ActivityPort: ...


class ReconcilePorts(GraphJobPorts, Protocol):
    """What reconciliation needs (shared/reconcile.py): list Graph, look in the archive,
    queue the missing."""

    @property
    def work(self) -> WorkPort: ...


class KeeperPorts(ReconcilePorts, Protocol):
    """What keeping the subscription needs (shared/lifecycle.py): Graph, the state store
    (the secret's fingerprint, last sign of life, the lock), and reconciliation after a gap."""


class UsagePorts(GraphJobPorts, Protocol):
    """What the PSTN / Direct Routing log copy needs (shared/usage/): Graph, the archive,
    the state store for its watermarks."""


class StatusPorts(ReconcilePorts, Protocol):
    """What the health verdict reads (shared/status.py): everything, read only."""

    @property
    def activity(self) -> ActivityPort: ...

    async def peek_poison(self, count: int) -> list[Any]:
        """Up to ``count`` poison messages as stored (not decoded), oldest first."""
        ...
