"""Huge meetings under Graph's strict per-record limits: paced, checkpointed, resumed; a
version published mid-fetch never lands in the older version's blob; national clouds."""

from __future__ import annotations

import time

import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.archiver import archive_record
from shared.graph import Throttled
from shared.messages import Source, WorkItem
from shared.recordfetch import checkpoint_name
from tests.integration.conftest import Host
from tests.integration.helpers import wait_for

# Graph's per-record windows (10 / 20 s first page, 50 / 5 min following pages) and the
# fetch's time budget (300 s), all scaled down 30 times so the town hall takes about a minute.
SCALE = 30
SCALED = {
    "GRAPH_RECORD_FIRST_PAGE_PACE": f"10/{20 / SCALE:.3f}",
    "GRAPH_RECORD_NEXT_PAGES_PACE": f"50/{300 / SCALE:g}",
    "ARCHIVE_FETCH_BUDGET_SECONDS": str(300 // SCALE),
}


@pytest.fixture
def strict_sim(sim):
    sim.client.set_faults(
        reset=True, record_first_seconds=20 / SCALE, record_next_seconds=300 / SCALE
    )
    yield sim
    sim.client.set_faults(reset=True)


def _reads(stats: dict) -> int:
    return sum(
        stats["requests"].get(k, 0) for k in ("record", "sessions_page", "participants_page")
    )


def test_town_hall_of_10000_sessions_is_archived_complete_by_resuming(
    app_env, strict_sim, tmp_path
) -> None:
    sim = strict_sim
    rid = sim.client.create_record(sessions=10_000, participants=10_400, notify=False)["id"]
    pages = 1 + (10_000 - 60 + 59) // 60 + 10_400 // 130  # record, sessions, participants
    before = sim.client.stats()
    conn = app_env["AzureWebJobsStorage"]
    host = Host({**app_env, **SCALED}, tmp_path / "host.log")
    try:
        queue = QueueClient.from_connection_string(
            conn, app_env["CALLRECORDS_QUEUE"], message_encode_policy=TextBase64EncodePolicy()
        )
        queue.send_message(WorkItem.new(rid, Source.CLI).to_json())
        container = ContainerClient.from_connection_string(conn, app_env["ARCHIVE_CONTAINER"])

        def archived() -> str | None:
            try:  # the app creates the container with its first write
                return next((b.name for b in container.list_blobs() if rid in b.name), None)
            except ResourceNotFoundError:
                return None

        started = time.monotonic()
        blob = wait_for(archived, timeout=240, what="the town hall archived")
        took = time.monotonic() - started
        log = host.log()
    finally:
        host.stop()
    after = sim.client.stats()
    document = orjson.loads(container.download_blob(blob).readall())
    expected = sim.client.expected(rid)
    assert len(document["sessions"]) == 10_000 and len(document["participants_v2"]) == 10_400
    assert document == expected
    del document, expected
    requests = _reads(after) - _reads(before)
    assert pages <= requests <= pages * 1.1, (requests, pages)
    # It outlived its time budget and Graph's 5-minute window (scaled): it paused and went on
    # from where it was, several times, instead of starting again at page 1.
    assert log.count("resuming at") >= 2, log[-3000:]
    record_gets = after["requests"]["record"] - before["requests"].get("record", 0)
    assert record_gets <= 3  # the record itself once, the version check, at most one more
    print(f"town hall: {requests} Graph requests for {pages} pages in {took:.0f} s")


async def test_a_long_retry_after_resumes_from_the_page_reached(runtime, sim) -> None:
    rid = sim.client.create_record(sessions=400, participants=300, notify=False)["id"]
    before = sim.client.stats()["requests"]
    # The record and two sessions pages answer; the third sessions page gets a long throttle.
    sim.client.set_faults(script=["ok", "ok", "ok", "429"], retry_after=60)
    try:
        with pytest.raises(Throttled):
            await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    finally:
        sim.client.set_faults(reset=True)
    checkpoint, _ = await runtime.state.load(checkpoint_name(rid))
    assert checkpoint is not None and checkpoint["pages"] == 3
    result = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    after = sim.client.stats()["requests"]
    assert result.written
    data = await (await runtime.archive.container.download_blob(result.blob)).readall()
    assert orjson.loads(data) == sim.client.expected(rid)
    # The second attempt did not fetch the record or its first pages again (one version check).
    assert after["record"] - before.get("record", 0) == 2
    assert after["sessions_page"] - before.get("sessions_page", 0) == 6 + 1  # 6 pages + the 429
    assert (await runtime.state.load(checkpoint_name(rid)))[0] is None


async def test_a_version_published_mid_fetch_never_lands_in_the_older_blob(runtime, sim) -> None:
    rid = sim.client.create_record(
        sessions=250, participants=270, notify=False, bump_after_requests=3
    )["id"]
    result = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    assert result.written and result.version == 2
    names = [b.name async for b in runtime.archive.container.list_blobs()]
    assert names == [result.blob] and names[0].endswith(f"{rid}/v2.json")
    data = await (await runtime.archive.container.download_blob(result.blob)).readall()
    assert orjson.loads(data) == sim.client.expected(rid)


async def test_a_small_record_changing_between_its_two_pages_is_fetched_again(runtime, sim) -> None:
    # One page of sessions and one of participants_v2: v2 is published right after the record
    # itself was read, so the participants page already belongs to v2.
    rid = sim.client.create_record(sessions=3, participants=4, notify=False, bump_after_requests=1)[
        "id"
    ]
    result = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    assert result.written and result.version == 2
    names = [b.name async for b in runtime.archive.container.list_blobs()]
    assert names == [result.blob]
    data = await (await runtime.archive.container.download_blob(result.blob)).readall()
    assert orjson.loads(data) == sim.client.expected(rid)


async def test_national_cloud_archives_without_participants_v2(sim, make_runtime) -> None:
    sim.client.set_config(participants_v2_available=0)
    try:
        rt = make_runtime(GRAPH_PARTICIPANTS_V2="off")
        await rt.archive.container.create_container()
        rid = sim.client.create_record(sessions=130, participants=200, notify=False)["id"]
        result = await archive_record(rt, WorkItem.new(rid, Source.CLI))
    finally:
        sim.client.set_config(participants_v2_available=1)
    blob = rt.archive.container.get_blob_client(result.blob)
    document = orjson.loads(await (await blob.download_blob()).readall())
    expected = sim.client.expected(rid)
    assert "participants_v2" not in document
    assert "not available" in document["@archiver.participants_v2"]
    assert document["sessions"] == expected["sessions"]
    assert (await blob.get_blob_properties()).metadata["participantsv2"] == "unavailable"
