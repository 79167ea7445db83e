"""Reconciliation and backfill against the simulator and Azurite: exactly the missing records
are queued, a second run adds nothing once they are archived, and the 30-day clamp."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.archiver import archive_record
from shared.clock import utcnow
from shared.messages import Source, WorkItem
from shared.ratelimit import SlidingWindow
from shared.reconcile import (
    RETENTION,
    EmptyRange,
    days,
    reconcile,
    since_from_text,
)

# The List API budget (40 / 20 s) is the real limiter's job; here it would only add waiting.
FAST = SlidingWindow(limit=10_000, period=1.0)


def spread_over_30_days(sim, count: int) -> list[str]:
    """``count`` calls, one every 30 days / count, none notified (as if every notice was lost)."""
    now = utcnow()
    step = (RETENTION - timedelta(hours=1)) / count
    return [
        sim.client.create_record(
            sessions=1, participants=1, start=now - timedelta(minutes=20) - i * step, notify=False
        )["id"]
        for i in range(count)
    ]


async def drain(rt) -> list[WorkItem]:
    """Take every message off the queue and archive it, as the queue trigger would."""
    taken: list[WorkItem] = []
    while True:
        batch = [m async for m in rt.work.queue.receive_messages(max_messages=32)]
        if not batch:
            return taken
        items = [WorkItem.from_body(m.content) for m in batch]
        await asyncio.gather(*(archive_record(rt, item) for item in items))
        for m in batch:
            await rt.work.queue.delete_message(m)
        taken += items


async def blob_names(rt) -> list[str]:
    return [b.name async for b in rt.archive.container.list_blobs()]


async def test_backfill_queues_exactly_the_missing_and_a_second_run_nothing(
    fresh_sim, runtime
) -> None:
    ids = spread_over_30_days(fresh_sim, 36)
    too_old = fresh_sim.client.create_record(start=utcnow() - timedelta(days=35), notify=False)
    # Some already archived; one of them has since got a version 2, which is not.
    pre = ids[::7]
    for rid in pre:
        await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    fresh_sim.client.new_version(pre[0], notify=False)
    expected = (set(ids) - set(pre)) | {pre[0]}

    seen = []
    report = await reconcile(
        runtime,
        utcnow() - timedelta(days=30),
        source=Source.BACKFILL,
        limiter=FAST,
        progress=seen.append,
    )
    assert (report.listed, report.archived) == (36, len(pre) - 1)
    assert report.queued == report.missing == len(expected)
    assert seen[-1].fraction == 1.0 and len(seen) > 30  # progress for every day of the window

    queued = await drain(runtime)
    assert sorted(i.id for i in queued) == sorted(expected)  # each exactly once
    assert {i.source for i in queued} == {"backfill"}
    assert too_old["id"] not in {i.id for i in queued}
    names = await blob_names(runtime)
    assert len(names) == len(ids) + 1  # every record, and v1 and v2 of the updated one
    assert {n.rsplit("/", 1)[1] for n in names if pre[0] in n} == {"v1.json", "v2.json"}

    again = await reconcile(runtime, utcnow() - timedelta(days=30), limiter=FAST)
    assert (again.listed, again.archived, again.queued) == (36, 36, 0)
    assert await runtime.work.queue.peek_messages() == []


async def test_no_dedupe_against_the_queue_duplicates_are_harmless(fresh_sim, runtime) -> None:
    """The decision documented in docs/operations.md: a queue cannot be searched, so two runs
    before the queue drains queue the same ids twice, and the archive still gets each once."""
    ids = spread_over_30_days(fresh_sim, 4)
    since = utcnow() - timedelta(days=30)
    first = await reconcile(runtime, since, source=Source.BACKFILL, limiter=FAST)
    second = await reconcile(runtime, since, source=Source.BACKFILL, limiter=FAST)
    assert first.queued == second.queued == 4
    queued = await drain(runtime)
    assert sorted(i.id for i in queued) == sorted(ids * 2)
    assert len(await blob_names(runtime)) == 4


async def test_dry_run_counts_and_queues_nothing(fresh_sim, runtime) -> None:
    spread_over_30_days(fresh_sim, 5)
    report = await reconcile(runtime, utcnow() - timedelta(days=30), dry_run=True, limiter=FAST)
    assert (report.listed, report.missing, report.queued) == (5, 5, 0)
    assert (await runtime.work.queue.get_queue_properties()).approximate_message_count == 0


async def test_a_range_is_clamped_to_the_30_days_graph_keeps(fresh_sim, runtime) -> None:
    now = utcnow()
    report = await reconcile(runtime, now - timedelta(days=45), dry_run=True, limiter=FAST)
    assert report.clamped
    assert now - RETENTION < report.since < now - RETENTION + timedelta(minutes=10)
    assert not (await reconcile(runtime, now - RETENTION, dry_run=True, limiter=FAST)).clamped
    with pytest.raises(EmptyRange, match="before the oldest record Graph keeps"):
        await reconcile(runtime, now - timedelta(days=45), now - timedelta(days=31), limiter=FAST)
    with pytest.raises(EmptyRange, match="empty range"):
        await reconcile(runtime, now - timedelta(days=1), now - timedelta(days=2), limiter=FAST)


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
