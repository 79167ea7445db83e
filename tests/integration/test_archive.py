"""Blob naming from startDateTime, and write-if-absent against real Azurite."""

from __future__ import annotations

import asyncio
import copy
import uuid

import orjson

from shared.blobstore import ArchiveWriter, record_prefix
from shared.clock import parse_graph_datetime

RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"


def _record(version: int) -> dict[str, object]:
    return {
        "@odata.context": "x",
        "id": RID,
        "version": version,
        "startDateTime": "2020-02-25T18:52:21.2169889Z",
        "sessions": [{"id": "s1", "segments": [{"id": "g1"}]}],
    }


async def test_written_once_then_noop_then_new_version(azurite) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.get_container_client(f"arch{uuid.uuid4().hex[:10]}")
    await container.create_container()
    writer = ArchiveWriter(container)
    try:
        v1 = _record(1)
        name, written = await writer.write(v1, orjson.dumps(v1))
        assert (name, written) == (f"2020/02/25/{RID}/v1.json", True)

        changed = copy.deepcopy(v1)
        changed["sessions"] = []  # same version, different bytes: must not overwrite
        assert await writer.write(changed, orjson.dumps(changed)) == (name, False)

        blob = container.get_blob_client(name)
        assert orjson.loads(await (await blob.download_blob()).readall()) == v1
        props = await blob.get_blob_properties()
        assert props.content_settings.content_type == "application/json"
        assert props.metadata["callrecordid"] == RID and props.metadata["version"] == "1"

        v2 = _record(2)
        assert await writer.write(v2, orjson.dumps(v2)) == (f"2020/02/25/{RID}/v2.json", True)
        names = sorted([b.name async for b in container.list_blobs()])
        assert names == [f"2020/02/25/{RID}/v1.json", f"2020/02/25/{RID}/v2.json"]

        # Ten concurrent writers of one new version: exactly one wins.
        v3 = _record(3)
        results = await asyncio.gather(*(writer.write(v3, orjson.dumps(v3)) for _ in range(10)))
        assert sum(written for _, written in results) == 1
        # Every version sits in the record's folder, the one reconciliation looks in.
        folder = record_prefix(RID, parse_graph_datetime(v3["startDateTime"]))
        in_folder = [b.name async for b in container.list_blobs(name_starts_with=folder)]
        assert in_folder == [f"{folder}v1.json", f"{folder}v2.json", f"{folder}v3.json"]
        other = record_prefix(str(uuid.uuid4()), parse_graph_datetime(v3["startDateTime"]))
        assert [b.name async for b in container.list_blobs(name_starts_with=other)] == []
    finally:
        await container.delete_container()
        await service.close()
