"""The archive: one immutable blob per (record id, version), written only if absent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, ContentSettings, StorageErrorCode
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from shared.clock import parse_graph_datetime
from shared.graph.retry import LEASE_WAIT, Contended, RetryPolicy
from shared.ids import normalize_id
from shared.jsonvalues import as_object

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 60  # the longest lease storage grants short of an infinite one (15-60 s)
BLOCK_BYTES = 4 * 1024 * 1024  # staged block size for records written page by page
_warned_create: set[str] = set()  # containers we could not create (logged once each)


def error_code(exc: Exception) -> str:
    """The storage error code (``BlobAlreadyExists``, ...) the SDK puts on its exceptions."""
    code: object = getattr(exc, "error_code", None)
    return str(code or "")


def already_archived(exc: HttpResponseError) -> bool:
    """True only for "this blob exists": 409 BlobAlreadyExists or 412 (If-None-Match: *).
    Any other 409 (ContainerBeingDeleted, LeaseIdMissing, ...) is a failure to report."""
    if isinstance(exc, ResourceModifiedError) or exc.status_code == 412:
        return True
    return exc.status_code == 409 and error_code(exc) == StorageErrorCode.BLOB_ALREADY_EXISTS


def _container_missing(exc: HttpResponseError) -> bool:
    return exc.status_code == 404 and error_code(exc) == StorageErrorCode.CONTAINER_NOT_FOUND


async def ensure_container(container: ContainerClient) -> None:
    """Create the container if it is missing (a fresh account, or one deleted by hand).

    In Azure the app's role may not allow creating containers (Bicep creates them): a 403 is
    logged once and ignored, so the write that needed it fails with its own clear error and
    the record is retried like any storage outage, never turned into a poison by this.
    """
    try:
        await container.create_container()
        log.warning("created missing container %s", container.container_name)
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise
        if container.container_name not in _warned_create:
            _warned_create.add(container.container_name)
            log.error(
                "container %s is missing and this identity may not create it (403): create it "
                "or grant the role (infra/README.md)",
                container.container_name,
            )


async def with_container(container: ContainerClient, op: Callable[[], Awaitable[T]]) -> T:
    """Run a blob operation; if the container is missing, create it and run it once more."""
    try:
        return await op()
    except ResourceNotFoundError as exc:
        if not _container_missing(exc):
            raise
    await ensure_container(container)
    return await op()


def blob_name(record: dict[str, Any]) -> str:
    """``{yyyy}/{MM}/{dd}/{id}/v{version}.json`` from the record's startDateTime in UTC."""
    rid = normalize_id(record.get("id"))
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"record {rid} has no integer version: {version!r}")
    start = parse_graph_datetime(record.get("startDateTime"))
    return f"{start:%Y/%m/%d}/{rid}/v{version}.json"


def record_prefix(record_id: str, start: datetime) -> str:
    """The folder holding every version of one record."""
    return f"{start.astimezone(UTC):%Y/%m/%d}/{normalize_id(record_id)}/"


def _metadata(record: dict[str, Any]) -> dict[str, str]:
    return {
        "callrecordid": normalize_id(record["id"]),
        "version": str(record["version"]),
        "startdatetime": str(record.get("startDateTime", "")),
    }


class ArchiveWriter:
    """Writes records into one container; a second write of the same version is a no-op."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    async def write(self, record: dict[str, Any], data: bytes) -> tuple[str, bool]:
        """Upload ``data`` (the record's JSON) if its blob is absent.

        Returns (blob name, True if this call wrote it). ``If-None-Match: *`` makes the check
        and the write one atomic step, so concurrent duplicates cannot overwrite each other.
        """
        name = blob_name(record)
        return name, await self.upload(name, data, record)

    async def upload(
        self, name: str, data: bytes, record: dict[str, Any], extra: dict[str, str] | None = None
    ) -> bool:
        """A record's JSON as blob ``name``, if absent, with the record's metadata."""
        return await self.write_named(name, data, {**_metadata(record), **(extra or {})})

    async def write_named(self, name: str, data: bytes, metadata: dict[str, str]) -> bool:
        """Upload JSON ``data`` as blob ``name`` if it is absent; True if this call wrote it
        (also used for the PSTN / Direct Routing rows, which are not call records)."""

        async def upload() -> None:
            await self.container.upload_blob(
                name,
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
                metadata=metadata,
            )

        try:
            await with_container(self.container, upload)
        except HttpResponseError as exc:
            if already_archived(exc):
                return False
            raise
        return True

    async def names(self, prefix: str) -> AsyncIterator[str]:
        """Every blob name under ``prefix`` (a day folder, a record's folder)."""
        async for blob in self.container.list_blobs(name_starts_with=prefix):
            yield blob.name

    async def any_blob(self) -> bool:
        """Whether the archive holds a blob (one single-item listing); ResourceNotFoundError
        if the container does not exist."""
        async for _ in self.container.list_blobs(results_per_page=1):
            return True
        return False

    def staged(self, record: dict[str, Any], block_ids: list[str], size: int) -> StagedBlob:
        """The record's blob, written as staged blocks (continuing ``block_ids``)."""
        return StagedBlob(self, blob_name(record), record, block_ids, size)


class StaleBlocks(RuntimeError):
    """The staged blocks a checkpoint names are gone (Azure Storage discards uncommitted
    blocks after 7 days): the fetch must start again from the first page."""


class StagedBlob:
    """A record written block by block: nothing is visible until the commit, which happens
    only if the blob is absent. The staged blocks survive this process: a later attempt
    continues with the same list (``block_ids``) for up to 7 days, after which Azure Storage
    discards uncommitted blocks (learn.microsoft.com/rest/api/storageservices/put-block-list).
    Memory stays at about one block (4 MiB) whatever the meeting's size.
    """

    def __init__(
        self,
        writer: ArchiveWriter,
        name: str,
        record: dict[str, Any],
        block_ids: list[str],
        size: int,
    ) -> None:
        self.writer, self.name, self.record = writer, name, record
        self.blob = writer.container.get_blob_client(name)
        self.block_ids = list(block_ids)
        self.size = size  # bytes staged so far
        self.buffer = bytearray()
        self._prefix = uuid.uuid4().hex  # every id has the same length, as Put Block requires

    @property
    def total(self) -> int:
        return self.size + len(self.buffer)

    async def add(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= BLOCK_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self.buffer:
            return
        block_id = f"{self._prefix}{len(self.block_ids):08d}"
        data = bytes(self.buffer)
        await with_container(self.writer.container, lambda: self.blob.stage_block(block_id, data))
        self.block_ids.append(block_id)
        self.size += len(data)
        self.buffer = bytearray()

    async def exists(self) -> bool:
        return await self.blob.exists()

    async def commit(self, metadata: dict[str, str] | None = None) -> bool:
        """Make the blob visible if absent; False if that version was archived already."""
        extra = metadata or {}
        if not self.block_ids:  # it all fit in one block: one plain upload
            return await self.writer.upload(self.name, bytes(self.buffer), self.record, extra)
        await self.flush()
        try:
            await self.blob.commit_block_list(
                [BlobBlock(block_id=b) for b in self.block_ids],
                content_settings=ContentSettings(content_type="application/json"),
                metadata={**_metadata(self.record), **extra},
                match_condition=MatchConditions.IfMissing,
            )
        except HttpResponseError as exc:
            if already_archived(exc):
                return False
            if exc.status_code == 400 and error_code(exc) == StorageErrorCode.INVALID_BLOCK_LIST:
                raise StaleBlocks(f"{self.name}: staged blocks are gone") from exc
            raise
        return True


class StateStore:
    """Small mutable JSON blobs the app keeps for itself (the subscription's fingerprint and
    last sign of life, checkpoints of records being fetched).

    They live in their own container in the host storage account, never in the archive: the
    archive may carry a WORM policy, and nothing in it is ever rewritten. Saves can be made
    conditional on the ETag read, so two workers never silently overwrite each other.
    """

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    async def load(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the JSON object, its ETag), or (None, None) if absent or unreadable."""
        blob = self.container.get_blob_client(name)
        try:
            downloader = await blob.download_blob()
            data = await downloader.readall()
        except ResourceNotFoundError:
            return None, None
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("state blob %s is not JSON; ignoring it", name)
            return None, downloader.properties.etag
        return as_object(value), downloader.properties.etag

    async def save(self, name: str, value: dict[str, Any], etag: str | None = None) -> str | None:
        """Write ``value``; with ``etag``, only over that version (``""``: only if absent).
        The new ETag (for the next conditional save, no read needed), or None if another
        writer got there first."""
        blob = self.container.get_blob_client(name)
        kwargs: dict[str, Any] = {}
        if etag == "":
            kwargs["match_condition"] = MatchConditions.IfMissing
        elif etag is not None:
            kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        data = orjson.dumps(value)

        async def upload() -> dict[str, Any]:
            return await blob.upload_blob(
                data,
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
                **kwargs,
            )

        try:
            result = await with_container(self.container, upload)
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return None
            raise
        return str(result.get("etag") or "") or "*"

    async def delete(self, name: str) -> None:
        try:
            await self.container.delete_blob(name)
        except ResourceNotFoundError:
            pass

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, wait: RetryPolicy = LEASE_WAIT) -> AsyncGenerator[None]:
        """Hold the lease on state blob ``name`` (created empty if missing) while the block
        runs: one instance at a time across every instance of the app.

        Timer triggers are singletons across instances, but the same work also runs from the
        queue (lifecycle actions), from an operator and from instances that start together.
        A blob lease is held by one client at a time
        (learn.microsoft.com/rest/api/storageservices/lease-blob): this waits for it as
        ``wait`` says, renews it while the work runs, and releases it after; a holder that
        dies loses it when its lease expires (LEASE_SECONDS), so nothing waits forever.
        """
        blob = self.container.get_blob_client(name)

        async def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                await blob.upload_blob(b"", overwrite=False)

        try:
            await with_container(self.container, create)
        except HttpResponseError as exc:
            if exc.status_code != 412:  # leased by another instance already: it exists
                raise
        lease = BlobLeaseClient(blob)

        async def acquire() -> None:
            try:
                await lease.acquire(lease_duration=LEASE_SECONDS)
            except HttpResponseError as exc:
                if exc.status_code == 409:  # LeaseAlreadyPresent: another instance holds it
                    raise Contended(f"{name} is leased by another instance") from exc
                raise

        def waiting(_exc: BaseException, _wait: float) -> None:
            log.debug("%s is held by another instance; waiting for it", name)

        await wait.run(acquire, on_retry=waiting)
        renewal = asyncio.create_task(_keep_leased(lease, name))
        try:
            yield
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
            try:
                await lease.release()
            except AzureError as exc:  # it expires by itself within a minute
                log.warning("could not release the lease on %s: %s", name, type(exc).__name__)


async def _keep_leased(lease: BlobLeaseClient, name: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        try:
            await lease.renew()
        except AzureError as exc:  # the work goes on; another instance may start after expiry
            log.warning("could not renew the lease on %s: %s", name, type(exc).__name__)
