"""Reconciliation against the in-memory ports: exactly the missing records are queued, a
second run after they are archived queues nothing, a dry run queues nothing, a throttled List
is waited out by the pager, a slice that meets a Graph outage comes back later."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.clock import utcnow
from shared.graph.retry import RetryPolicy
from shared.messages import ControlAction, ControlItem, WorkItem
from shared.ratelimit import SlidingWindow
from shared.reconcile import EmptyRange, queue_slices, reconcile, reconcile_slice
from shared.recordfetch import fetch_record
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts
from tests.functional.conftest import settings

FAST = SlidingWindow(limit=10_000, period=1.0)


def spread(graph: FakeGraph, count: int, days: int = 10) -> list[str]:
    now = utcnow()
    return [
        graph.add_record(now - timedelta(minutes=30) - i * timedelta(days=days) / count).id
        for i in range(count)
    ]


async def test_exactly_the_missing_are_queued_and_a_second_run_queues_nothing(
    graph: FakeGraph, ports: FakePorts
) -> None:
    ids = spread(graph, 9)
    for rid in ids[:3]:  # notified and archived already
        await fetch_record(ports, rid)
    report = await reconcile(ports, utcnow() - timedelta(days=11), limiter=FAST)
    queued = {q.item.id for q in ports.work.take() if isinstance(q.item, WorkItem)}
    assert queued == set(ids[3:])
    assert (report.listed, report.archived, report.queued) == (9, 3, 6)
    assert report.pages >= 5  # two per page, one List per UTC day: the pager read them all
    for rid in queued:
        await fetch_record(ports, rid)
    again = await reconcile(ports, utcnow() - timedelta(days=11), limiter=FAST)
    assert again.queued == 0 and again.archived == 9 and not ports.work.queued


async def test_a_dry_run_counts_and_queues_nothing(graph: FakeGraph, ports: FakePorts) -> None:
    spread(graph, 4, days=2)
    report = await reconcile(ports, utcnow() - timedelta(days=3), limiter=FAST, dry_run=True)
    assert report.missing == 4 and report.queued == 0 and not ports.work.queued


async def test_a_throttled_list_is_waited_out_by_the_pager(graph: FakeGraph) -> None:
    # The client's in-place retries off, so the 429 reaches the pager's LIST_THROTTLED policy.
    client = graph.client(retry=RetryPolicy("none"))
    ports = FakePorts(settings=settings(), graph=client)
    ids = spread(graph, 5, days=1)
    graph.script = [(200, None), (429, 0.01), (429, 0.01)]
    report = await reconcile(ports, utcnow() - timedelta(days=2), limiter=FAST)
    assert report.queued == 5
    assert {q.item.id for q in ports.work.take() if isinstance(q.item, WorkItem)} == set(ids)
    assert sum(1 for r in graph.requests if "callRecords?" in r) == report.pages + 2
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_a_slice_that_meets_an_outage_comes_back_later(
    graph: FakeGraph, ports: FakePorts
) -> None:
    spread(graph, 2, days=1)
    now = utcnow()
    item = ControlItem.reconcile_slice(now - timedelta(hours=1), now)
    graph.script = [(500, None)]
    assert await reconcile_slice(ports, item) is None
    (again,) = ports.work.take()
    assert (
        isinstance(again.item, ControlItem) and again.item.action is ControlAction.RECONCILE_SLICE
    )
    assert again.delay_seconds == ports.settings.retry_max_seconds


async def test_hourly_slices_are_queued_newest_first(ports: FakePorts) -> None:
    now = utcnow().replace(minute=20)
    count = await queue_slices(ports, timedelta(hours=4), now)
    slices = [q.item for q in ports.work.take()]
    assert count == len(slices) == 5  # four whole hours and the current part hour
    assert all(isinstance(s, ControlItem) for s in slices)
    starts = [s.since for s in slices if isinstance(s, ControlItem) and s.since]
    assert starts == sorted(starts, reverse=True)


async def test_a_range_is_clamped_to_the_30_days_graph_keeps(ports: FakePorts) -> None:
    report = await reconcile(ports, utcnow() - timedelta(days=45), limiter=FAST, dry_run=True)
    assert report.clamped and utcnow() - report.since < timedelta(days=30)
    with pytest.raises(EmptyRange, match="before the oldest record Graph keeps"):
        await reconcile(ports, utcnow() - timedelta(days=60), utcnow() - timedelta(days=40))
    with pytest.raises(EmptyRange, match="empty range"):
        await reconcile(ports, utcnow(), utcnow() - timedelta(hours=1))
