"""Status verdicts and the PSTN / Direct Routing sync, against the in-memory ports."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.archiver import archive_item
from shared.clock import utcnow
from shared.graph.retry import RetryPolicy
from shared.messages import Source, WorkItem
from shared.recordfetch import fetch_record
from shared.status import Verdict, collect
from shared.subscriptions import SubscriptionAction, SubscriptionError, SubscriptionKeeper
from shared.usage.kinds import UsageKind
from shared.usage.sync import copy_range, sync_usage_logs
from shared.usage.watermark import WatermarkStore
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts
from tests.functional.conftest import settings

HOUR = timedelta(hours=1)


async def test_healthy_when_subscribed_and_archiving(graph: FakeGraph, ports: FakePorts) -> None:
    await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()
    record = graph.add_record(utcnow() - 3 * HOUR)
    fetched = await fetch_record(ports, record.id)
    await ports.activity.archived(fetched.blob)
    status = await collect(ports)
    assert status.verdict is Verdict.HEALTHY, status.problems
    assert status.graph_sampled == 1 and status.archived_last_24h == 1


async def test_unhealthy_verdicts_name_the_problem(graph: FakeGraph, ports: FakePorts) -> None:
    status = await collect(ports)
    assert status.verdict is Verdict.UNHEALTHY
    assert any("no Graph subscription" in p for p in status.problems)
    await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()
    lost = graph.add_record(utcnow() - 5 * HOUR)  # published long ago, never archived
    await ports.work.put_poison(WorkItem.new(lost.id, Source.NOTIFICATION), "gave up", "x")
    status = await collect(ports)
    assert status.sample_missing == [lost.id]
    assert any("archive lacks" in p for p in status.problems)
    assert any("poison" in p for p in status.problems)  # POISON_ALERT_HOURS 0: at once
    assert any("nothing archived in 24 h" in p for p in status.problems)


def _row(start: str, n: int) -> dict[str, object]:
    return {"id": f"row-{start}-{n}", "startDateTime": start, "callType": "ucap_in"}


async def test_usage_rows_copied_once_and_the_watermark_moves_day_by_day(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    days = [(now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ") for d in (3, 2, 1)]
    graph.usage_rows["getPstnCalls"] = [_row(day, n) for day in days for n in range(5)]
    ports.settings = settings(USAGE_LOGS_BACKFILL_DAYS="4")
    reports = await sync_usage_logs(ports)
    pstn = next(r for r in reports if r.kind is UsageKind.PSTN)
    assert pstn.written == 15 and pstn.stopped is None and pstn.ranges >= 4
    mark = await WatermarkStore(ports).load(UsageKind.PSTN)
    assert mark.until is not None and now - mark.until < timedelta(minutes=1)
    again = await sync_usage_logs(ports)  # the overlap is read again, nothing written twice
    assert next(r for r in again if r.kind is UsageKind.PSTN).written == 0
    assert len([n for n in ports.archive.blobs if "row-" in n or "pstn" in n.lower()]) >= 15
    assert sum(1 for n in ports.archive.blobs if n.startswith(UsageKind.PSTN.prefix)) == 15


async def test_a_throttle_stops_the_hourly_sync_and_a_backfill_waits_it_out(
    graph: FakeGraph,
) -> None:
    client = graph.client(retry=RetryPolicy("none"))  # the 429s reach the pager
    ports = FakePorts(settings=settings(), graph=client)
    start = utcnow() - timedelta(days=2)
    graph.usage_rows["getDirectRoutingCalls"] = [
        _row((start + (n + 1) * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ"), n) for n in range(6)
    ]
    try:
        graph.script = [(429, 0.01)]
        stopped = await copy_range(ports, UsageKind.DIRECT_ROUTING, start, utcnow())
        assert stopped.stopped and "throttled" in stopped.stopped and stopped.written == 0
        graph.script = [(429, 0.01), (429, 0.01)]
        done = await copy_range(
            ports, UsageKind.DIRECT_ROUTING, start, utcnow(), wait_long_throttles=True
        )
        assert done.stopped is None and done.written == 6
        prefix = UsageKind.DIRECT_ROUTING.prefix
        assert sum(1 for n in ports.archive.blobs if n.startswith(prefix)) == 6  # all arrived
    finally:
        await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_the_time_budget_ends_the_run_and_the_next_one_resumes(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    graph.usage_rows["getPstnCalls"] = [
        _row((now - timedelta(days=d, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), 0)
        for d in (3, 2, 1)
    ]
    ports.settings = settings(USAGE_LOGS_BACKFILL_DAYS="4")
    spent = await sync_usage_logs(ports, budget=timedelta(0))
    pstn = next(r for r in spent if r.kind is UsageKind.PSTN)
    assert pstn.stopped and "time budget" in pstn.stopped and pstn.written == 0
    assert (await WatermarkStore(ports).load(UsageKind.PSTN)).until is None
    done = next(r for r in await sync_usage_logs(ports) if r.kind is UsageKind.PSTN)
    assert done.stopped is None and done.written == 3


async def test_a_refused_subscription_names_the_role_and_the_limit(
    graph: FakeGraph, ports: FakePorts
) -> None:
    graph.script = [(200, None), (403, None)]  # the listing, then the create
    with pytest.raises(SubscriptionError, match=r"CallRecords\.Read\.All"):
        await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()
    # Once the role is granted the next hourly run creates it.
    outcome = await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()
    assert outcome.action is SubscriptionAction.CREATED and graph.subscriptions


async def test_a_fault_mid_range_keeps_the_watermark_at_the_last_whole_day(
    graph: FakeGraph,
) -> None:
    ports = FakePorts(settings=settings(USAGE_LOGS_BACKFILL_DAYS="2"), graph=graph.client())
    now = utcnow()
    # Three rows a day, two pages a day (page_size 2), over the two days the first run reads.
    graph.usage_rows["getPstnCalls"] = [
        _row((now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ"), h)
        for h in (46, 40, 30, 20, 10, 2)
    ]
    # Day 1: pages 1 and 2; day 2: page 1, then a 503 whose Retry-After is too long to wait in
    # place: the run ends there, day 2 half written, the watermark after day 1.
    graph.script = [(200, None), (200, None), (200, None), (503, 30.0)]
    (first,) = [r for r in await sync_usage_logs(ports) if r.kind is UsageKind.PSTN]
    assert first.stopped and "throttled (503, Retry-After 30 s)" in first.stopped
    mark = first.watermark
    assert mark is not None and mark == first.since + timedelta(days=1)
    assert first.pages == 3 and first.written == 3 + 2
    assert len(ports.archive.blobs) == first.written

    (second,) = [r for r in await sync_usage_logs(ports) if r.kind is UsageKind.PSTN]
    assert second.stopped is None
    # From the watermark, re-reading a week: the first run's full read did not complete.
    assert second.since == mark - timedelta(days=7)
    assert second.written == 1 and len(ports.archive.blobs) == 6
    assert second.watermark is not None and second.watermark > mark
    await ports.graph._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_health_notices_a_listed_record_the_archive_lacks_until_it_is_archived(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """One List page of the last 24 h, each record published by now looked up in the archive."""
    lost = graph.add_record(utcnow() - 5 * HOUR)
    fresh = graph.add_record(utcnow() - timedelta(minutes=2))  # inside the grace: may be on its way
    facts = await collect(ports)
    assert facts.graph_sampled == 2
    assert facts.sample_missing == [lost.id]
    assert any(
        p.startswith("Graph lists 1 call record(s)") and lost.id in p for p in facts.problems
    )
    assert facts.verdict is Verdict.UNHEALTHY

    await archive_item(ports, WorkItem.new(lost.id, Source.RECONCILE), dequeue_count=1)
    facts = await collect(ports)
    assert facts.sample_missing == [] and facts.archived_last_24h == 1
    assert not any(p.startswith("Graph lists") for p in facts.problems)
    assert fresh.id not in facts.sample_missing
