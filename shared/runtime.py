"""Per-process services: settings, the credential, one httpx client, the storage clients.

Created on first use (not at import, so indexing never needs settings) and reused by every
invocation in the process: one token per lifetime, kept-alive connections, no per-message setup.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue.aio import QueueClient
from httpx_aiohttp import AiohttpTransport

from shared.activity import ActivityLog
from shared.auth import AsyncTokenCredential, TokenProvider, managed_identity
from shared.blobstore import ArchiveWriter, StateStore
from shared.graph import GraphClient
from shared.settings import Settings, StorageTarget, load_settings
from shared.storage import container_client, queue_client
from shared.workqueue import WorkQueue

GRAPH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
GRAPH_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)


@dataclass
class Runtime:
    settings: Settings
    credential: AsyncTokenCredential  # Graph's (and storage's, for the same identity)
    credentials: list[AsyncTokenCredential]  # every distinct one, closed with the runtime
    tokens: TokenProvider
    http: httpx.AsyncClient
    graph: GraphClient
    work: WorkQueue
    archive: ArchiveWriter
    tables: ContainerClient  # ANALYTICS_CONTAINER: derived Parquet tables (shared/analytics/)
    state: StateStore  # the app's own small blobs (host storage), never in the archive
    activity: ActivityLog
    # Records of more than one page fetched at once in this process: each holds a page, a
    # block being filled and its participants (archiver.archive_record).
    large_fetches: asyncio.Semaphore
    host_credential: AsyncTokenCredential | None = None  # None with a connection string
    # The poison queue undecoded, for health's peek: made on first use, kept, so a monitor
    # polling /api/health every minute does not build a client (and a connection) each time.
    _poison_peeker: QueueClient | None = field(default=None, repr=False)

    def raw_poison(self) -> QueueClient:
        """A client of the poison queue that does not decode (poison.replay, keep_forever):
        one message that is not base64 must not fail a whole receive. Close it after use."""
        return queue_client(
            self.settings.host_storage,
            self.settings.poison_queue_name,
            self.host_credential,
            decode=False,
        )

    async def peek_poison(self, count: int) -> list[Any]:
        """Up to ``count`` poison messages as stored (not decoded), oldest first."""
        if self._poison_peeker is None:
            self._poison_peeker = self.raw_poison()
        return list(await self._poison_peeker.peek_messages(max_messages=count))

    async def close(self) -> None:
        await self.http.aclose()
        await self.work.queue.close()
        await self.work.poison.close()
        await self.archive.container.close()
        await self.tables.close()
        await self.state.container.close()
        await self.activity.container.close()
        if self._poison_peeker is not None:
            await self._poison_peeker.close()
        for credential in self.credentials:
            await credential.close()


_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


def build_runtime(settings: Settings, credential: AsyncTokenCredential | None = None) -> Runtime:
    """Wire the services for one set of settings (tests and the CLI build their own).

    A credential passed in (the CLI's DefaultAzureCredential) serves Graph and identity-based
    storage alike; without one, each managed identity in use (AZURE_CLIENT_ID, __clientId)
    gets one credential, shared by every client that uses it and closed with the runtime.
    """
    credentials: dict[str | None, AsyncTokenCredential] = {}

    def identity(client_id: str | None) -> AsyncTokenCredential:
        if credential is not None:
            return credential
        if client_id not in credentials:
            credentials[client_id] = managed_identity(client_id)
        return credentials[client_id]

    def storage_identity(target: StorageTarget) -> AsyncTokenCredential | None:
        return None if target.connection_string else identity(target.client_id)

    graph_identity = identity(settings.client_id)
    tokens = TokenProvider(graph_identity, settings.graph_scope)
    # httpx's API over aiohttp's connection pool: the same client code, a fraction of the CPU
    # per request under concurrency (bench/README.md has the figures).
    http = httpx.AsyncClient(timeout=GRAPH_TIMEOUT, transport=AiohttpTransport(limits=GRAPH_LIMITS))
    host, archive = settings.host_storage, settings.archive_storage
    work = WorkQueue(
        queue_client(host, settings.queue_name, storage_identity(host)),
        queue_client(host, settings.poison_queue_name, storage_identity(host)),
    )
    container = container_client(archive, settings.archive_container, storage_identity(archive))
    return Runtime(
        settings=settings,
        credential=graph_identity,
        credentials=[graph_identity, *(c for c in credentials.values() if c is not graph_identity)],
        tokens=tokens,
        http=http,
        graph=GraphClient(
            settings.graph_base_url,
            tokens,
            http,
            first_pace=settings.first_page_pace,
            next_pace=settings.next_pages_pace,
        ),
        work=work,
        archive=ArchiveWriter(container),
        tables=container_client(archive, settings.analytics_container, storage_identity(archive)),
        state=StateStore(
            container_client(host, settings.state_container_name, storage_identity(host))
        ),
        activity=ActivityLog(
            container_client(host, settings.activity_container, storage_identity(host))
        ),
        large_fetches=asyncio.Semaphore(settings.max_large_fetches),
        host_credential=storage_identity(host),
    )


async def get_runtime() -> Runtime:
    """The process-wide Runtime, built once from the app settings."""
    global _runtime, _lock
    if _runtime is not None:
        return _runtime
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _runtime is None:
            _runtime = build_runtime(load_settings())
    return _runtime


async def reset_runtime() -> None:
    """Close and forget the process-wide Runtime and the webhooks' queue (tests, settings
    changes)."""
    global _runtime, _lock
    from shared.webhookqueue import reset_webhook_queue

    await reset_webhook_queue()
    if _runtime is not None:
        await _runtime.close()
    _runtime, _lock = None, None
