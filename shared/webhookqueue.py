"""The webhooks' only service: the work queue, built from the settings alone.

Graph waits 3 s for an answer and counts one over 2,900 ms as slow
(learn.microsoft.com/graph/change-notifications-delivery-webhooks), so the path from a cold
process to the first 202 must not load what a webhook never uses: the Graph client, the blob
SDK, httpx, the archiver, reconciliation, analytics. ``webhook_queue`` builds the queue
clients (and, for identity-based storage, the managed identity) once per process; the rest of
the app builds its full Runtime (shared/runtime.py) on first use by the other functions.
"""

from __future__ import annotations

import asyncio

from shared.auth import AsyncTokenCredential, managed_identity
from shared.settings import Settings, load_settings
from shared.storage import queue_client
from shared.workqueue import WorkQueue

_built: tuple[Settings, WorkQueue, AsyncTokenCredential | None] | None = None
_lock: asyncio.Lock | None = None


async def webhook_queue() -> tuple[Settings, WorkQueue]:
    """(the settings, the work queue) of this process, built on first use."""
    global _built, _lock
    if _built is None:
        if _lock is None:
            _lock = asyncio.Lock()
        async with _lock:
            if _built is None:
                settings = load_settings()
                host = settings.host_storage
                credential = None if host.connection_string else managed_identity(host.client_id)
                work = WorkQueue(
                    queue_client(host, settings.queue_name, credential),
                    queue_client(host, settings.poison_queue_name, credential),
                )
                _built = (settings, work, credential)
    return _built[0], _built[1]


async def reset_webhook_queue() -> None:
    """Close and forget it (tests, settings changes; shared.runtime.reset_runtime calls this)."""
    global _built, _lock
    if _built is not None:
        _, work, credential = _built
        await work.queue.close()
        await work.poison.close()
        if credential is not None:
            await credential.close()
    _built, _lock = None, None
