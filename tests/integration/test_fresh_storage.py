"""A fresh storage account: the archive container and the queues are created on first need,
and only "this blob exists" counts as already archived."""

from __future__ import annotations

import orjson
import pytest
from azure.core.exceptions import HttpResponseError

from shared.archiver import archive_record
from shared.blobstore import already_archived
from shared.messages import Source, WorkItem


@pytest.fixture
async def bare_runtime(app_env):
    """A Runtime whose queues and container do not exist yet (a new account)."""
    from shared import runtime as rt_mod

    await rt_mod.reset_runtime()
    rt = await rt_mod.get_runtime()
    yield rt
    await rt_mod.reset_runtime()


async def test_first_record_creates_the_container(bare_runtime, sim) -> None:
    rt = bare_runtime
    assert not await rt.archive.container.exists()
    for sessions in (3, 400):  # one upload, and staged blocks
        rid = sim.client.create_record(sessions=sessions, participants=2, notify=False)["id"]
        result = await archive_record(rt, WorkItem.new(rid, Source.CLI))
        assert result.written
        data = await (await rt.archive.container.download_blob(result.blob)).readall()
        assert orjson.loads(data) == sim.client.expected(rid)


async def test_first_message_creates_the_queues(bare_runtime) -> None:
    rt = bare_runtime
    item = WorkItem.new("0b4b41a5-7e5e-4e1b-b5ad-40c7c2f8a7a0", Source.CLI)
    assert await rt.work.put([item]) == 1
    await rt.work.put_poison(item, "test")
    assert (await rt.work.queue.get_queue_properties()).approximate_message_count == 1
    assert (await rt.work.poison.get_queue_properties()).approximate_message_count == 1


async def test_only_blob_exists_means_archived(runtime) -> None:
    """Real 409s from storage: BlobAlreadyExists is "archived"; ContainerAlreadyExists (any
    other 409) is not, so it can never hide a failed write."""
    container = runtime.archive.container
    await container.upload_blob("x.json", b"{}")
    errors: list[HttpResponseError] = []
    for op in (lambda: container.upload_blob("x.json", b"{}"), container.create_container):
        try:
            await op()
        except HttpResponseError as exc:
            errors.append(exc)
    blob_exists, container_exists = errors
    assert (blob_exists.status_code, container_exists.status_code) == (409, 409)
    assert already_archived(blob_exists)
    assert not already_archived(container_exists)


async def test_no_right_to_create_the_container_is_logged_once_not_raised(azurite, caplog) -> None:
    """In Azure the app's role may not create containers: a 403 on create is logged once,
    and the write fails with its own error (retried like a storage outage)."""
    import logging
    import re
    from datetime import UTC, datetime, timedelta

    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    from azure.storage.blob.aio import ContainerClient

    from shared.blobstore import ArchiveWriter
    from tests.integration.conftest import unique

    conn = azurite.connection_string
    parts = dict(re.findall(r"(\w+)=([^;]+)", conn))
    key, endpoint = parts["AccountKey"], parts["BlobEndpoint"]
    sas = generate_account_sas(
        "devstoreaccount1",
        key,
        ResourceTypes(object=True),  # blobs only: creating a container is refused (403)
        AccountSasPermissions(read=True, write=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    container = ContainerClient(endpoint, unique("c"), credential=sas)
    writer = ArchiveWriter(container)
    record = {"id": "0b4b41a5-7e5e-4e1b-b5ad-40c7c2f8a7a0", "version": 1}
    record["startDateTime"] = "2026-11-01T10:00:00Z"
    caplog.set_level(logging.ERROR, logger="shared.blobstore")
    try:
        for _ in range(2):
            with pytest.raises(ResourceNotFoundError):
                await writer.write(record, b"{}")
    finally:
        await container.close()
    refusals = [r for r in caplog.records if "may not create it (403)" in r.getMessage()]
    assert len(refusals) == 1
