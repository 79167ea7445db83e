"""Graph's 403 during the permission grace, against the in-memory ports: a fresh grant of
CallRecords.Read.All can take about a day to reach a managed identity's tokens, so for
GRAPH_PERMISSION_GRACE_HOURS after the first refusal a refused record (or reconcile slice)
goes back on the queue and is never parked, even on the host's last try; after the grace the
403 is permanent and parks the record at once. Health names the missing role from the first
refusal on; a successful read ends the episode. In every case the record arrives once Graph
stops refusing."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from shared import permission, reconcile
from shared.archiver import archive_item, max_dequeue_count
from shared.clock import utcnow
from shared.messages import ControlItem, Source, WorkItem
from shared.ratelimit import SlidingWindow
from shared.reconcile import reconcile_slice
from shared.status import collect
from tests.fakes.graph import FakeGraph, FakeRecord
from tests.fakes.storage import FakePorts
from tests.functional.conftest import settings

IDENTITY = "5a3c0f4e-8f3e-4d6b-9c1a-2b7d9e0f1a2b"
REFUSED = [(403, None)]  # the next request: Graph's 403


@pytest.fixture(autouse=True)
def unpaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "_list_limiter", SlidingWindow(10_000, 1.0))


def _requeued(ports: FakePorts) -> WorkItem:
    (queued,) = ports.work.take()
    assert isinstance(queued.item, WorkItem)
    assert queued.delay_seconds is not None and queued.delay_seconds >= 1  # a back-off
    return queued.item


async def _role_problem(ports: FakePorts) -> str | None:
    problems = (await collect(ports, check_subscription=False)).problems
    return next((p for p in problems if permission.REQUIRED_ROLE in p), None)


async def _refused_once(
    graph: FakeGraph, ports: FakePorts, source: Source = Source.NOTIFICATION
) -> FakeRecord:
    """A record published 40 minutes ago, fetched once while Graph refuses the app."""
    record = graph.add_record(utcnow() - timedelta(minutes=40))
    graph.script = list(REFUSED)
    await archive_item(ports, WorkItem.new(record.id, source), dequeue_count=1)
    return record


async def _arrives(graph: FakeGraph, ports: FakePorts, record: FakeRecord, item: WorkItem) -> None:
    """Graph accepts the app again: the item archives the record and the refusal is over."""
    graph.script = []
    await archive_item(ports, item, dequeue_count=1)
    assert list(ports.archive.blobs) == [
        f"{record.start:%Y/%m/%d}/{record.id}/v{record.version}.json"
    ]
    assert ports.activity.lines and not ports.work.queued
    assert await permission.current_refusal(ports.state) is None
    assert await _role_problem(ports) is None


async def test_inside_the_grace_a_403_is_requeued_never_parked_and_the_record_arrives(
    graph: FakeGraph, ports: FakePorts
) -> None:
    ports.settings = settings(AZURE_CLIENT_ID=IDENTITY)
    record = graph.add_record(utcnow() - timedelta(minutes=40))
    item = WorkItem.new(record.id, Source.NOTIFICATION)
    for dequeue_count in (1, max_dequeue_count()):  # even on the host's last try
        graph.script = list(REFUSED)
        await archive_item(ports, item, dequeue_count=dequeue_count)
        item = _requeued(ports)
    assert not ports.work.poison and not ports.archive.blobs
    assert item.attempt == 2 and "403" in (item.last_error or "")
    problems = (await collect(ports, check_subscription=False)).problems
    first = problems[0]  # named before anything else
    assert "Graph answers 403" in first and permission.REQUIRED_ROLE in first
    assert f"the managed identity {IDENTITY}" in first and "retried, not parked" in first
    await _arrives(graph, ports, record, item)


async def test_the_grace_counts_from_the_first_refusal_then_the_403_parks(
    graph: FakeGraph, ports: FakePorts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="shared.archiver")
    now = utcnow()
    record = graph.add_record(now - timedelta(minutes=40))
    item = WorkItem.new(record.id, Source.NOTIFICATION)
    # Refused for an hour short of the grace (every instance counts from the first sighting).
    grace = timedelta(hours=ports.settings.permission_grace_hours)
    began = now - grace + timedelta(hours=1)
    await ports.state.save(
        permission.PERMISSION_BLOB, permission.Refusal(began, now, "403").to_json()
    )
    graph.script = list(REFUSED)
    await archive_item(ports, item, dequeue_count=max_dequeue_count())
    item = _requeued(ports)
    refusal = await permission.current_refusal(ports.state)
    assert refusal is not None and refusal.first_seen == began
    # An hour past the grace: the 403 is permanent, parked on the first try.
    over = now - grace - timedelta(hours=1)
    await ports.state.save(
        permission.PERMISSION_BLOB, permission.Refusal(over, now, "403").to_json()
    )
    graph.script = list(REFUSED)
    await archive_item(ports, item, dequeue_count=1)
    assert not ports.work.queued
    (parked,) = ports.work.poison
    assert parked["reason"] == "permanent error: Graph answered 403"
    assert "Unauthorized" in parked["error"] and "403" in parked["error"]
    assert any(
        r.name == "shared.archiver"
        and "needs the application role CallRecords.Read.All" in r.message
        for r in caplog.records
    )
    problem = await _role_problem(ports)
    assert problem is not None and "the grace period is over: records are parked" in problem
    # Granted at last: the parked record, replayed, arrives.
    await _arrives(graph, ports, record, parked["item"].replayed())


async def test_a_refusal_not_seen_for_hours_is_over_and_a_new_403_starts_a_new_grace(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    last = now - permission.EPISODE_GAP - timedelta(hours=1)
    stale = permission.Refusal(now - timedelta(days=3), last, "403")
    await ports.state.save(permission.PERMISSION_BLOB, stale.to_json())
    assert await _role_problem(ports) is None  # an episode long over is not shown
    record = await _refused_once(graph, ports, Source.RECONCILE)
    item = _requeued(ports)
    refusal = await permission.current_refusal(ports.state)
    assert refusal is not None and refusal.first_seen >= now  # counted from now, not 3 days ago
    await _arrives(graph, ports, record, item)


async def test_with_no_grace_the_first_403_parks_and_the_replay_arrives(
    graph: FakeGraph, ports: FakePorts
) -> None:
    ports.settings = settings(GRAPH_PERMISSION_GRACE_HOURS="0")
    record = await _refused_once(graph, ports)
    (parked,) = ports.work.poison
    assert parked["reason"] == "permanent error: Graph answered 403" and not ports.work.queued
    await _arrives(graph, ports, record, parked["item"].replayed())


async def test_a_refused_reconcile_slice_comes_back_and_its_records_arrive(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    record = graph.add_record(now - timedelta(minutes=90))
    piece = ControlItem.reconcile_slice(now - 2 * timedelta(hours=1), now)
    graph.script = list(REFUSED)
    assert await reconcile_slice(ports, piece) is None
    (again,) = ports.work.take()
    assert again.item == piece and again.delay_seconds == ports.settings.retry_max_seconds
    assert not ports.work.poison
    problem = await _role_problem(ports)
    assert problem is not None and "retried, not parked" in problem
    report = await reconcile_slice(ports, piece)  # granted: the slice lists, queues the record
    assert report is not None and report.queued == 1
    (queued,) = ports.work.take()
    assert isinstance(queued.item, WorkItem) and queued.item.id == record.id
    await _arrives(graph, ports, record, queued.item)
