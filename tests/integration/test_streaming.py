"""Big records are written page by page (staged blocks, one commit, only if absent)."""

from __future__ import annotations

import asyncio

import orjson

from shared.archiver import archive_record
from shared.messages import Source, WorkItem


async def _blobs(rt) -> dict[str, dict]:
    out = {}
    async for b in rt.archive.container.list_blobs():
        out[b.name] = orjson.loads(
            await (await rt.archive.container.download_blob(b.name)).readall()
        )
    return out


async def test_multi_page_record_streamed_complete_and_once(runtime, sim) -> None:
    rid = sim.client.create_record(
        sessions=250, participants=270, segments_per_session=3, notify=False
    )["id"]
    before = sim.client.stats()["requests"]
    first = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    assert first.written and first.pages == 5 + 3  # ceil(250/60) sessions + ceil(270/130)
    blobs = await _blobs(runtime)
    assert list(blobs.values()) == [sim.client.expected(rid)]
    props = await runtime.archive.container.get_blob_client(first.blob).get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert props.metadata == {
        "callrecordid": rid,
        "version": "1",
        "startdatetime": blobs[first.blob]["startDateTime"],
    }
    assert first.bytes == props.size

    # The same version again: detected after the first response, no further session pages.
    mid = sim.client.stats()["requests"]
    again = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    after = sim.client.stats()["requests"]
    assert not again.written
    assert after.get("sessions_page", 0) == mid.get("sessions_page", 0)
    assert mid.get("sessions_page", 0) - before.get("sessions_page", 0) == 4


async def test_concurrent_duplicates_of_a_big_record_commit_once(runtime, sim) -> None:
    rid = sim.client.create_record(sessions=130, participants=2, notify=False)["id"]
    results = await asyncio.gather(
        *(archive_record(runtime, WorkItem.new(rid, Source.CLI)) for _ in range(4))
    )
    assert sum(r.written for r in results) == 1
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]
