"""One instance at a time: a blob lease as a mutex across every instance of the app.

Timer triggers are singletons across instances, but the same work also runs from the queue
(lifecycle actions), from an operator (``POST /admin/functions/...``, the CLI) and from
instances that start together. A blob lease is held by one client at a time
(learn.microsoft.com/rest/api/storageservices/lease-blob): ``exclusive`` waits for it, renews
it while the work runs, and releases it after; a holder that dies loses it when its lease
expires (LEASE_SECONDS), so nothing waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from shared.blobstore import with_container

log = logging.getLogger(__name__)

LEASE_SECONDS = 60  # the longest lease storage grants short of an infinite one (15-60 s)
WAIT_SECONDS = 2.5 * LEASE_SECONDS  # a dead holder's lease expires within one lease


class LeaseBusy(RuntimeError):
    """Another instance held the lease for longer than this one would wait."""


async def _lock_blob_exists(container: ContainerClient, name: str) -> None:
    blob = container.get_blob_client(name)

    async def create() -> None:
        with contextlib.suppress(ResourceExistsError):
            await blob.upload_blob(b"", overwrite=False)

    try:
        await with_container(container, create)
    except HttpResponseError as exc:
        if exc.status_code != 412:  # leased by another instance already: it exists
            raise


async def _renew(lease: BlobLeaseClient, name: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        try:
            await lease.renew()
        except AzureError as exc:  # the work goes on; another instance may start after expiry
            log.warning("could not renew the lease on %s: %s", name, type(exc).__name__)


@contextlib.asynccontextmanager
async def exclusive(
    container: ContainerClient, name: str, wait_seconds: float = WAIT_SECONDS
) -> AsyncGenerator[None]:
    """Hold the lease on blob ``name`` (created empty if missing) while the block runs."""
    await _lock_blob_exists(container, name)
    lease = BlobLeaseClient(container.get_blob_client(name))
    deadline = time.monotonic() + wait_seconds
    waited = False
    while True:
        try:
            await lease.acquire(lease_duration=LEASE_SECONDS)
            break
        except HttpResponseError as exc:
            if exc.status_code != 409:  # 409 LeaseAlreadyPresent: someone else holds it
                raise
        if time.monotonic() > deadline:
            raise LeaseBusy(f"{name} stayed leased by another instance for {wait_seconds:.0f} s")
        if not waited:
            log.info("%s is held by another instance; waiting for it", name)
            waited = True
        await asyncio.sleep(0.5 + random.random())  # noqa: S311 (spreading retries)
    renewal = asyncio.create_task(_renew(lease, name))
    try:
        yield
    finally:
        renewal.cancel()
        await asyncio.gather(renewal, return_exceptions=True)
        try:
            await lease.release()
        except AzureError as exc:  # it expires by itself within a minute
            log.warning("could not release the lease on %s: %s", name, type(exc).__name__)
