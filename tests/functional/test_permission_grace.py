"""Graph's 403 during the permission grace, against the in-memory ports: a fresh grant of
CallRecords.Read.All can take about a day to reach a managed identity's tokens, so for
GRAPH_PERMISSION_GRACE_HOURS after the first refusal a refused record (or reconcile slice)
goes back on the queue and is never parked, even on the host's last try; after the grace the
403 is permanent and parks the record at once. Health names the missing role from the first
refusal on; a successful read ends the episode. In every case the record arrives once Graph
stops refusing."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from shared import permission
from shared.archiver import archive_item, max_dequeue_count, settle
from shared.clock import utcnow
from shared.graph import Unauthorized
from shared.messages import ControlItem, Source, WorkItem
from shared.reconcile import reconcile_slice
from shared.status import collect
from tests.fakes.graph import FakeGraph, FakeRecord
from tests.fakes.storage import FakePorts, FakeState
from tests.functional.conftest import archived_ids, drain, settings

IDENTITY = "5a3c0f4e-8f3e-4d6b-9c1a-2b7d9e0f1a2b"
REFUSED: list[tuple[int, float | None]] = [(403, None)]  # the next request: a 403


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


async def test_a_403_sent_before_a_success_is_stale_retried_soon_and_not_noted(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """At the grant, a 403 to a request sent before another read of this instance succeeded
    says nothing about now: noting it would show a refusal that is over for EPISODE_GAP, and
    the refusal's back-off would hold the record for hours."""
    now = utcnow()
    late, other = graph.add_record(now - timedelta(minutes=40)), graph.add_record(now)
    item = WorkItem.new(late.id, Source.NOTIFICATION).retried("403")
    for _ in range(6):  # deep in the refusal's back-off
        item = item.retried("403")
    sent = permission.sent_now()
    await archive_item(ports, WorkItem.new(other.id, Source.NOTIFICATION), dequeue_count=1)
    refused = Unauthorized(403, "Authorization_RequestDenied", "Insufficient privileges")
    await settle(ports, item, refused, dequeue_count=1, sent=sent)
    (queued,) = ports.work.take()
    assert isinstance(queued.item, WorkItem) and queued.item.id == late.id
    assert queued.item.attempt == item.attempt + 1 and queued.delay_seconds is not None
    assert queued.delay_seconds <= max(ports.settings.retry_base_seconds, 1.0)
    assert await permission.current_refusal(ports.state) is None and not ports.work.poison
    await archive_item(ports, queued.item, dequeue_count=1)
    assert archived_ids(ports) == {late.id, other.id} and not ports.work.queued
    assert await _role_problem(ports) is None


async def test_a_success_here_ends_a_refusal_another_instance_noted(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """The instance that saw the 403 may have been recycled before any success of its own."""
    now = utcnow()
    elsewhere = permission.Refusal(now - timedelta(hours=2), now, "403 on another instance")
    await ports.state.save(permission.PERMISSION_BLOB, elsewhere.to_json())
    assert await _role_problem(ports) is not None
    record = graph.add_record(now - timedelta(minutes=40))
    await _arrives(graph, ports, record, WorkItem.new(record.id, Source.NOTIFICATION))


async def test_past_the_grace_a_refused_slice_is_let_go_and_a_later_pass_finds_its_records(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """A refusal outlasting the grace must not keep every hour's slices circulating (they
    would pile up for as long as the role is missing): the slice is dropped, health still
    names the role, and once it is granted the next pass over those hours queues the record."""
    now = utcnow()
    record = graph.add_record(now - timedelta(minutes=90))
    grace = timedelta(hours=ports.settings.permission_grace_hours)
    over = permission.Refusal(now - grace - timedelta(hours=1), now, "403")
    await ports.state.save(permission.PERMISSION_BLOB, over.to_json())
    piece = ControlItem.reconcile_slice(now - 2 * timedelta(hours=1), now)
    graph.script = list(REFUSED)
    assert await reconcile_slice(ports, piece) is None
    assert not ports.work.queued and not ports.work.poison  # let go, not requeued or parked
    problem = await _role_problem(ports)
    assert problem is not None and "the grace period is over" in problem
    report = await reconcile_slice(ports, piece)  # granted: the daily pass lists these hours
    assert report is not None and report.queued == 1
    (queued,) = ports.work.take()
    assert isinstance(queued.item, WorkItem) and queued.item.id == record.id
    await _arrives(graph, ports, record, queued.item)


class NoteHeldUntilCleared(FakeState):
    """A state store whose read of the refusal note, once armed, returns only after the
    note is deleted: a refused read's note, slow, overtaken by another read's success."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.cleared = asyncio.Event()

    async def load(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        if self.armed and name == permission.PERMISSION_BLOB:
            self.armed = False
            await self.cleared.wait()
        return await super().load(name)

    async def delete(self, name: str) -> None:
        await super().delete(name)
        if name == permission.PERMISSION_BLOB:
            self.cleared.set()


async def test_a_success_while_a_403_is_noted_leaves_no_refusal_behind(graph: FakeGraph) -> None:
    """The moment of the grant, with reads in flight at once: one record meets the last 403
    and, while its note is being read, another record's read succeeds and ends the refusal.
    The late note must not bring the refusal back (health would name it for EPISODE_GAP),
    and both records arrive."""
    state = NoteHeldUntilCleared()
    client = graph.client()
    ports = FakePorts(settings=settings(), graph=client, state=state)
    try:
        now = utcnow()
        late, other = (graph.add_record(now - timedelta(minutes=40 + i)) for i in range(2))
        graph.script = list(REFUSED)
        await archive_item(ports, WorkItem.new(late.id, Source.NOTIFICATION), dequeue_count=1)
        item = _requeued(ports)  # the refusal, noted, before the grant
        assert await _role_problem(ports) is not None
        graph.script, state.armed = list(REFUSED), True  # the last 403, then the grant
        await asyncio.gather(
            archive_item(ports, item, dequeue_count=1),
            archive_item(ports, WorkItem.new(other.id, Source.NOTIFICATION), dequeue_count=1),
        )
        assert not graph.script and archived_ids(ports) == {other.id}
        assert await permission.current_refusal(ports.state) is None
        assert await _role_problem(ports) is None
        (again,) = ports.work.queued  # the stale 403: tried again soon, not hours later
        assert again.delay_seconds is not None
        assert again.delay_seconds <= max(ports.settings.retry_base_seconds, 1.0)
        await drain(ports)
        assert archived_ids(ports) == {late.id, other.id} and not ports.work.poison
        assert await permission.current_refusal(ports.state) is None
    finally:
        await client._http.aclose()  # pyright: ignore[reportPrivateUsage]
