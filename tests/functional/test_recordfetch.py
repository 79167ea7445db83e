"""A record's fetch against the in-memory ports: every page (next links in the $metadata#
form too), the per-record pause and resume from the checkpoint, a version published
mid-fetch, lost staged blocks."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from shared.archiver import archive_item, archive_record
from shared.graph import Throttled
from shared.graph.retry import Fault, classify_fault
from shared.messages import Source, WorkItem
from shared.recordfetch import Paused, checkpoint_name, fetch_record
from tests.fakes.graph import FakeGraph, FakeRecord
from tests.fakes.storage import FakePorts
from tests.functional.conftest import archived_ids, settings

START = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


async def test_every_page_of_a_record_is_archived_once(graph: FakeGraph, ports: FakePorts) -> None:
    record = graph.add_record(START, sessions=7, participants=5)  # 4 sessions + 3 people pages
    fetched = await fetch_record(ports, record.id)
    assert fetched.written and fetched.sessions == 7 and fetched.participants == 5
    doc = ports.archive.document(fetched.blob)
    assert [s["id"] for s in doc["sessions"]] == [f"s{i}" for i in range(7)]
    assert [p["id"] for p in doc["participants_v2"]] == [f"p{i}" for i in range(5)]
    assert fetched.blob == f"2026/11/30/{record.id}/v1.json"
    # The $metadata# links were resolved to the resource they name, never sent as they are.
    assert not any("$metadata" in r for r in graph.requests)
    again = await fetch_record(ports, record.id)
    assert not again.written and len(ports.archive.blobs) == 1


async def test_a_paused_fetch_continues_from_its_checkpoint(
    graph: FakeGraph, ports: FakePorts
) -> None:
    record = graph.add_record(START, sessions=9, participants=3)
    # A long Retry-After on the third sessions page: more than the client waits in place.
    graph.script = [(200, None), (200, None), (429, 60.0)]
    with pytest.raises(Throttled) as caught:
        await fetch_record(ports, record.id)
    assert classify_fault(caught.value) is Fault.TRANSIENT
    checkpoint, _ = await ports.state.load(checkpoint_name(record.id))
    assert checkpoint is not None and checkpoint["pages"] == 2 and checkpoint["link"]
    asked_before = len(graph.requests)
    fetched = await fetch_record(ports, record.id)
    assert fetched.written and fetched.resumed == 1 and fetched.sessions == 9
    # Resumed at the page reached: the record and its first two pages are not asked again.
    resumed_requests = graph.requests[asked_before:]
    assert not any("$expand=sessions" in r for r in resumed_requests)
    assert (await ports.state.load(checkpoint_name(record.id)))[0] is None
    doc = ports.archive.document(fetched.blob)
    assert len(doc["sessions"]) == 9 and len(doc["participants_v2"]) == 3


async def test_the_time_budget_pauses_the_fetch_as_retry_later(
    graph: FakeGraph, ports: FakePorts
) -> None:
    record = graph.add_record(START, sessions=5)
    ports.settings = ports.settings.__class__(
        **{**ports.settings.__dict__, "fetch_budget_seconds": 0}
    )
    with pytest.raises(Paused) as caught:
        await fetch_record(ports, record.id)
    assert caught.value.retry_after == 0  # not a Graph status: a pause on purpose
    item = WorkItem.new(record.id, Source.NOTIFICATION)
    await archive_item(ports, item, dequeue_count=1)
    (again,) = ports.work.take()
    assert isinstance(again.item, WorkItem) and again.item.id == record.id
    assert again.delay_seconds is not None
    assert not ports.work.poison
    # The next attempt, with a budget, continues from the checkpoint and archives it.
    ports.settings = settings()
    assert isinstance(again.item, WorkItem)
    await archive_item(ports, again.item, dequeue_count=1)
    assert record.id in archived_ids(ports)


async def test_a_version_published_mid_fetch_is_fetched_again_at_the_new_version(
    graph: FakeGraph, ports: FakePorts
) -> None:
    record = graph.add_record(START, sessions=5, participants=3)

    def publish_v2(request: httpx.Request) -> None:
        if "participants_v2" in str(request.url) and record.version == 1:
            record.version = 2

    graph.before = publish_v2
    result = await archive_record(ports, WorkItem.new(record.id, Source.NOTIFICATION))
    assert result.version == 2 and result.written
    assert list(ports.archive.blobs) == [f"2026/11/30/{record.id}/v2.json"]
    assert ports.archive.document(result.blob)["version"] == 2


async def test_lost_staged_blocks_start_the_record_again(
    graph: FakeGraph, ports: FakePorts
) -> None:
    record = graph.add_record(START, sessions=9)
    graph.script = [(200, None), (200, None), (429, 60.0)]
    with pytest.raises(Throttled):
        await fetch_record(ports, record.id)
    ports.archive.lose_blocks()  # uncommitted blocks are discarded after 7 days
    fetched = await fetch_record(ports, record.id)
    assert fetched.written
    assert len(ports.archive.document(fetched.blob)["sessions"]) == 9


async def test_a_record_not_published_yet_comes_back_later_and_is_parked_after_the_window(
    graph: FakeGraph, ports: FakePorts
) -> None:
    rid = "e523d2ed-2966-4b6b-925b-754a88034cc5"
    await archive_item(ports, WorkItem.new(rid, Source.NOTIFICATION), dequeue_count=1)
    (later,) = ports.work.take()
    assert later.delay_seconds == ports.settings.retry_base_seconds  # doubling from the base
    old = WorkItem(rid, first_seen=datetime(2026, 1, 1, tzinfo=UTC))
    await archive_item(ports, old, dequeue_count=1)
    assert not ports.work.queued
    (parked,) = ports.work.poison
    window = ports.settings.retry_window_minutes
    assert parked["item"].id == rid and f"not available after {window} min" in parked["reason"]
    assert "404" in parked["error"]
    # Published after all (a person replays it): it arrives.
    graph.records[rid] = FakeRecord(rid, START, 1, 1, 1)
    await archive_item(ports, parked["item"].replayed(), dequeue_count=1)
    assert rid in archived_ids(ports)


async def test_a_national_cloud_archives_without_participants_v2(graph: FakeGraph) -> None:
    national = settings(GRAPH_BASE_URL="https://graph.microsoft.us")
    assert not national.participants_v2
    client = graph.client()
    ports = FakePorts(settings=national, graph=client)
    record = graph.add_record(START, sessions=3, participants=4)
    fetched = await fetch_record(ports, record.id)
    doc = ports.archive.document(fetched.blob)
    assert "participants_v2" not in doc and len(doc["sessions"]) == 3
    assert "not available in this cloud" in doc["@archiver.participants_v2"]
    assert ports.archive.metadata[fetched.blob]["participantsv2"] == "unavailable"
    assert not any("participants_v2" in r for r in graph.requests)
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]
