"""Reconciliation against the in-memory ports: exactly the missing records are queued (a later
version of an archived one included), a second run after they are archived queues nothing,
runs before the queue drains queue twice and the archive still gets each once, a dry run
queues nothing, the range is clamped to Graph's 30 days and cut at UTC midnights, a throttled
List is waited out by the pager, a slice that meets a Graph outage comes back later, a slice
out of time goes on from its next link."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.archiver import archive_item
from shared.clock import utcnow
from shared.graph.retry import RetryPolicy
from shared.messages import ControlAction, ControlItem, Source, WorkItem
from shared.ratelimit import SlidingWindow
from shared.reconcile import (
    RETENTION,
    EmptyRange,
    Report,
    days,
    queue_slices,
    reconcile,
    reconcile_slice,
    scheduled_pass,
    since_from_text,
)
from shared.recordfetch import fetch_record
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts
from tests.functional.conftest import archived_ids, drain, settings

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


async def test_a_backfill_of_30_days_queues_each_missing_record_once(
    graph: FakeGraph, ports: FakePorts
) -> None:
    ids = spread(graph, 36, days=30)
    too_old = graph.add_record(utcnow() - timedelta(days=35))
    pre = ids[::7]  # archived already; the first of them has since got a version 2
    for rid in pre:
        await fetch_record(ports, rid)
    graph.records[pre[0]].version = 2
    expected = (set(ids) - set(pre)) | {pre[0]}
    seen: list[Report] = []
    report = await reconcile(
        ports,
        utcnow() - timedelta(days=30),
        source=Source.BACKFILL,
        limiter=FAST,
        progress=seen.append,
    )
    assert (report.listed, report.archived) == (36, len(pre) - 1)
    assert report.queued == report.missing == len(expected)
    assert seen[-1].fraction == 1.0 and len(seen) > 30  # progress for every day of the window
    queued = [q.item for q in ports.work.take()]
    assert all(isinstance(i, WorkItem) and i.source is Source.BACKFILL for i in queued)
    assert sorted(i.id for i in queued if isinstance(i, WorkItem)) == sorted(expected)
    assert too_old.id not in {i.id for i in queued if isinstance(i, WorkItem)}
    for item in queued:
        assert isinstance(item, WorkItem)
        await fetch_record(ports, item.id)
    names = list(ports.archive.blobs)
    assert len(names) == len(ids) + 1  # every record, and v1 and v2 of the updated one
    assert {n.rsplit("/", 1)[1] for n in names if pre[0] in n} == {"v1.json", "v2.json"}
    again = await reconcile(ports, utcnow() - timedelta(days=30), limiter=FAST)
    assert (again.listed, again.archived, again.queued) == (36, 36, 0)
    assert not ports.work.queued


async def test_runs_before_the_queue_drains_queue_twice_and_the_archive_gets_each_once(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """A queue cannot be searched, so nothing is deduplicated against it: the archive's
    write-if-absent makes the duplicates harmless."""
    ids = spread(graph, 4, days=29)
    since = utcnow() - timedelta(days=30)
    first = await reconcile(ports, since, source=Source.BACKFILL, limiter=FAST)
    second = await reconcile(ports, since, source=Source.BACKFILL, limiter=FAST)
    assert first.queued == second.queued == 4
    queued = [q.item for q in ports.work.take()]
    assert sorted(i.id for i in queued if isinstance(i, WorkItem)) == sorted(ids * 2)
    for item in queued:
        assert isinstance(item, WorkItem)
        await archive_item(ports, item, dequeue_count=1)
    assert len(ports.archive.blobs) == 4 and not ports.work.poison


async def test_a_dry_run_counts_and_queues_nothing(graph: FakeGraph, ports: FakePorts) -> None:
    spread(graph, 4, days=2)
    report = await reconcile(ports, utcnow() - timedelta(days=3), limiter=FAST, dry_run=True)
    assert (report.listed, report.missing, report.queued) == (4, 4, 0)
    assert not ports.work.queued


async def test_a_throttled_list_is_waited_out_by_the_pager(graph: FakeGraph) -> None:
    # The client's in-place retries off, so the 429 reaches the pager's LIST_THROTTLED policy.
    client = graph.client(retry=RetryPolicy("none"))
    ports = FakePorts(settings=settings(), graph=client)
    ids = spread(graph, 5, days=1)
    graph.script = [(200, None), (429, 0.01), (429, 0.01)]
    try:
        report = await reconcile(ports, utcnow() - timedelta(days=2), limiter=FAST)
        assert report.queued == 5
        assert sum(1 for r in graph.requests if "callRecords?" in r) == report.pages + 2
        assert set(await drain(ports)) == set(ids) == archived_ids(ports)
    finally:
        await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_a_slice_that_meets_an_outage_comes_back_later(
    graph: FakeGraph, ports: FakePorts
) -> None:
    spread(graph, 2, days=1)
    now = utcnow()
    inside = graph.add_record(now - timedelta(minutes=30))
    item = ControlItem.reconcile_slice(now - timedelta(hours=1), now)
    graph.script = [(500, None)]
    assert await reconcile_slice(ports, item) is None
    (again,) = ports.work.take()
    assert (
        isinstance(again.item, ControlItem) and again.item.action is ControlAction.RECONCILE_SLICE
    )
    assert again.delay_seconds == ports.settings.retry_max_seconds
    # Graph is back when the slice comes round again: its record arrives.
    assert isinstance(again.item, ControlItem)
    await drain(ports, [again.item])
    assert inside.id in archived_ids(ports)


async def test_a_slice_out_of_time_goes_on_from_its_next_link_in_a_new_message(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """A slice has functionTimeout less a margin; at the daily 48-hour pass an hour of a
    100,000-call day shares the instance's List pace with 47 others. With no time at all each
    invocation lists one page and queues the rest from the next link: no page is listed twice
    and every record arrives."""
    hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    ids = [graph.add_record(hour + timedelta(minutes=5 + 5 * i)).id for i in range(7)]
    work = [ControlItem.reconcile_slice(hour, hour + timedelta(hours=1))]  # one UTC day
    invocations = 0
    queued: list[str] = []
    while work:
        item = work.pop()
        invocations += 1
        report = await reconcile_slice(ports, item, budget=timedelta(0))
        assert report is not None and report.pages == 1
        for q in ports.work.take():
            if isinstance(q.item, ControlItem):
                assert q.item.since == item.since and q.item.until == item.until
                assert q.item.resume_from and "$skiptoken=" in q.item.resume_from
                work.append(q.item)
            else:
                queued.append(q.item.id)
    lists = [r for r in graph.requests if "callRecords?" in r]
    assert invocations == len(lists) == 4  # seven records, two a page
    assert sorted(queued) == sorted(ids)
    for rid in queued:
        await archive_item(ports, WorkItem.new(rid, Source.RECONCILE), dequeue_count=1)
    assert archived_ids(ports) == set(ids)


async def test_a_slice_throttled_for_its_whole_budget_goes_on_later(graph: FakeGraph) -> None:
    """Graph throttles the first List request past the slice's budget (a throttle can last
    hours): no page was read, so the rest waits like a slice after a transient fault, then
    arrives."""
    client = graph.client(retry=RetryPolicy("none"))  # the 429 reaches LIST_THROTTLED
    ports = FakePorts(settings=settings(), graph=client)
    hour = (utcnow() - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    rid = graph.add_record(hour + timedelta(minutes=10)).id
    graph.script = [(429, 0.01)]
    try:
        item = ControlItem.reconcile_slice(hour, hour + timedelta(hours=1))
        report = await reconcile_slice(ports, item, budget=timedelta(0))
        assert report is not None and report.pages == 0 and report.resume
        (rest,) = ports.work.take()
        assert rest.delay_seconds == ports.settings.retry_max_seconds
        assert isinstance(rest.item, ControlItem) and rest.item.resume_from
        assert set(await drain(ports, [rest.item])) == {rid} == archived_ids(ports)
    finally:
        await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_a_slice_across_midnight_goes_on_in_the_next_day_when_out_of_time(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """Each UTC day is its own listing: out of time before the second day's first page, the
    rest starts at midnight from that page's link."""
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    ids = [graph.add_record(midnight + timedelta(minutes=m)).id for m in (-40, -20, 20)]
    work = [
        ControlItem.reconcile_slice(midnight - timedelta(hours=1), midnight + timedelta(hours=1))
    ]
    starts: list[datetime] = []
    queued: list[str] = []
    while work:
        item = work.pop()
        assert item.since is not None
        starts.append(item.since)
        await reconcile_slice(ports, item, budget=timedelta(0))
        for q in ports.work.take():
            if isinstance(q.item, ControlItem):
                work.append(q.item)
            else:
                queued.append(q.item.id)
    assert starts == [midnight - timedelta(hours=1), midnight]  # a page a day, two a page
    assert sorted(queued) == sorted(ids)


async def test_slices_of_one_day_at_once_share_one_listing_of_its_folder(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """The daily pass starts up to batchSize slices at once, most of them on the same day: the
    day folder is listed once for those in flight together (one copy of its names in memory),
    and again for a slice that starts after, which must see what was archived meanwhile."""
    # three hours of yesterday (UTC)
    hour = (utcnow() - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    ids = [graph.add_record(hour + timedelta(minutes=20 + 60 * h)).id for h in range(3)]
    await fetch_record(ports, ids[0])  # archived: its slice queues nothing
    listings: list[str] = []
    names = ports.archive.names

    def counted(prefix: str):
        listings.append(prefix)
        return names(prefix)

    ports.archive.names = counted  # type: ignore[method-assign]
    slices = [
        ControlItem.reconcile_slice(hour + timedelta(hours=h), hour + timedelta(hours=h + 1))
        for h in range(3)
    ]
    reports = await asyncio.gather(*(reconcile_slice(ports, item) for item in slices))
    assert listings == [f"{hour:%Y/%m/%d}/"]
    assert [r.queued for r in reports if r] == [0, 1, 1]
    assert set(await drain(ports)) == set(ids[1:])
    again = await reconcile_slice(ports, slices[2])  # after: a listing of its own, fresh
    assert len(listings) == 2 and again is not None and again.queued == 0
    assert archived_ids(ports) == set(ids)


@pytest.mark.parametrize("deep_hour", [5, 6])
async def test_the_deep_pass_runs_at_the_configured_utc_hour(
    ports: FakePorts, deep_hour: int
) -> None:
    """RECONCILE_DEEP_PASS_HOUR picks the run that lists 48 hours (49 slices with the current
    one); every other run lists the recent 4 (5 slices)."""
    ports.settings = settings(RECONCILE_DEEP_PASS_HOUR=str(deep_hour))
    at_six = utcnow().replace(hour=6, minute=37)
    count = await scheduled_pass(ports, at_six)
    assert count == len(ports.work.take()) == (49 if deep_hour == 6 else 5)


async def test_hourly_slices_are_queued_newest_first(ports: FakePorts) -> None:
    now = utcnow().replace(minute=20)
    count = await queue_slices(ports, timedelta(hours=4), now)
    slices = [q.item for q in ports.work.take()]
    assert count == len(slices) == 5  # four whole hours and the current part hour
    assert all(isinstance(s, ControlItem) for s in slices)
    starts = [s.since for s in slices if isinstance(s, ControlItem) and s.since]
    assert starts == sorted(starts, reverse=True)


async def test_a_range_is_clamped_to_the_30_days_graph_keeps(ports: FakePorts) -> None:
    now = utcnow()
    report = await reconcile(ports, now - timedelta(days=45), limiter=FAST, dry_run=True)
    assert report.clamped
    assert now - RETENTION < report.since < now - RETENTION + timedelta(minutes=10)
    assert not (await reconcile(ports, now - RETENTION, dry_run=True, limiter=FAST)).clamped
    with pytest.raises(EmptyRange, match="before the oldest record Graph keeps"):
        await reconcile(ports, utcnow() - timedelta(days=60), utcnow() - timedelta(days=40))
    with pytest.raises(EmptyRange, match="empty range"):
        await reconcile(ports, utcnow(), utcnow() - timedelta(hours=1))


def test_days_cut_the_range_at_utc_midnights() -> None:
    since = datetime(2025, 6, 1, 22, 30, tzinfo=UTC)
    until = datetime(2025, 6, 3, 1, 0, tzinfo=UTC)
    cuts = list(days(since, until))
    assert cuts == [
        (since, datetime(2025, 6, 2, tzinfo=UTC)),
        (datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 6, 3, tzinfo=UTC)),
        (datetime(2025, 6, 3, tzinfo=UTC), until),
    ]
    assert list(days(until, until)) == []


def test_since_from_text() -> None:
    now = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    assert since_from_text("7d", now) == now - timedelta(days=7)
    assert since_from_text("36h", now) == now - timedelta(hours=36)
    assert since_from_text("90m", now) == now - timedelta(minutes=90)
    assert since_from_text("2025-06-01", now) == datetime(2025, 6, 1, tzinfo=UTC)
    assert since_from_text("2025-06-01T08:00:00+02:00", now) == datetime(2025, 6, 1, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        since_from_text("yesterday", now)
