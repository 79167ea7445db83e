"""The rolling sweep of Graph's 30 days against the in-memory ports: the pieces queued over
RECONCILE_SWEEP_HOURS runs cover the frame exactly once, oldest first, the cursor is the state
store's (a run on any instance continues it), a finished sweep starts again at its own time,
runs at once advance it once, and the records whose notifications were lost (a later version
of an old call, an old first version) are archived once the slices are worked. Health shows
the sweep's progress and names one that has stopped completing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from shared import reconcile
from shared.archiver import archive_item
from shared.clock import utcnow
from shared.lifecycle import run_control
from shared.messages import ControlAction, ControlItem, WorkItem
from shared.recordfetch import fetch_record
from shared.status import collect
from shared.sweep import SWEEP_BLOB, load, queue_next_piece
from tests.fakes.graph import FakeGraph, FakeRecord
from tests.fakes.storage import FakePorts, FakeState, FakeWork
from tests.functional.conftest import settings

RUNS = 6  # RECONCILE_SWEEP_HOURS scaled down: the week becomes six hourly runs
HOUR = timedelta(hours=1)


def _slices(work: FakeWork) -> list[ControlItem]:
    items = [q.item for q in work.take()]
    assert all(isinstance(i, ControlItem) for i in items)
    slices = [i for i in items if isinstance(i, ControlItem)]
    assert {s.action for s in slices} <= {ControlAction.RECONCILE_SLICE}
    return slices


async def _sweep(ports: FakePorts, start: datetime, runs: int = RUNS) -> list[list[ControlItem]]:
    """One run an hour from ``start``: what each queued."""
    queued: list[list[ControlItem]] = []
    for i in range(runs):
        count = await queue_next_piece(ports.state, ports.work, RUNS, start + i * HOUR)
        pieces = _slices(ports.work)
        assert count == len(pieces) > 0
        queued.append(pieces)
    return queued


async def _work(ports: FakePorts, slices: list[ControlItem]) -> list[str]:
    """Work the slices as the queue would, then the records they queued; the ids queued."""
    for item in slices:
        await run_control(ports, item)
    records = [q.item for q in ports.work.take()]
    ids: list[str] = []
    for item in records:
        assert isinstance(item, WorkItem)
        ids.append(item.id)
        await archive_item(ports, item, dequeue_count=1)
    return ids


def _blob(record: FakeRecord, version: int) -> str:
    return f"{record.start.astimezone(UTC):%Y/%m/%d}/{record.id}/v{version}.json"


async def test_one_sweep_lists_the_30_days_once_and_archives_what_notifications_lost(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    five_days = graph.add_record(now - timedelta(days=5), sessions=3)
    await fetch_record(ports, five_days.id)  # version 1 was notified and archived
    five_days.version = 2  # Graph published version 2; its notification was lost
    month_old = graph.add_record(now - timedelta(days=29, hours=20))  # never notified
    recent = graph.add_record(now - 3 * HOUR)  # never notified

    runs = await _sweep(ports, now)
    pieces = [s for run in runs for s in run]
    assert pieces[0].since == reconcile.oldest_listable(now)  # oldest first
    assert pieces[-1].until == now  # the frame ends where the sweep started
    for before, after in pairwise(pieces):
        assert before.until == after.since  # no gap, no overlap
    for piece in pieces:
        assert piece.since is not None and piece.until is not None
        assert piece.until - piece.since <= timedelta(days=1)
        assert (piece.until - timedelta(microseconds=1)).date() == piece.since.date()
    sweep, _ = await load(ports.state)
    assert sweep is not None and sweep.done and sweep.runs == RUNS

    queued = await _work(ports, pieces)
    assert Counter(queued) == Counter({five_days.id: 1, month_old.id: 1, recent.id: 1})
    assert {_blob(five_days, 1), _blob(five_days, 2), _blob(month_old, 1), _blob(recent, 1)} == set(
        ports.archive.blobs
    )
    assert ports.archive.document(_blob(five_days, 2))["version"] == 2
    assert not ports.work.poison


async def test_the_cursor_is_the_state_stores_so_any_instance_continues_the_sweep(
    graph: FakeGraph, ports: FakePorts
) -> None:
    now = utcnow()
    ends: list[datetime] = []
    for i in range(RUNS):
        elsewhere = FakeWork()  # each run on another instance, with nothing but the state
        await queue_next_piece(ports.state, elsewhere, RUNS, now + i * HOUR)
        pieces = _slices(elsewhere)
        sweep, _ = await load(ports.state)
        assert sweep is not None and sweep.runs == i + 1
        assert sweep.cursor == pieces[-1].until
        if ends:
            assert pieces[0].since == ends[-1]  # where the previous run left it
        ends.append(sweep.cursor)
    assert ends[-1] == now


async def test_a_finished_sweep_starts_again_and_finds_what_was_published_since(
    graph: FakeGraph, ports: FakePorts
) -> None:
    start = utcnow() - 2 * RUNS * HOUR  # two sweeps of hourly runs, the second ending now
    old = graph.add_record(start - timedelta(days=10))
    first = [s for run in await _sweep(ports, start) for s in run]
    assert await _work(ports, first) == [old.id]
    done, _ = await load(ports.state)
    assert done is not None and done.last_completed_at == start + (RUNS - 1) * HOUR

    old.version = 2  # a later version, its notification lost, after the first sweep listed it
    again = start + RUNS * HOUR
    runs = await _sweep(ports, again)
    assert runs[0][0].since == reconcile.oldest_listable(again)
    assert runs[-1][-1].until == again
    sweep, _ = await load(ports.state)
    assert sweep is not None and sweep.frame_end == again and sweep.runs == RUNS
    assert sweep.last_started_at == again and sweep.last_completed_at == again + (RUNS - 1) * HOUR
    assert await _work(ports, [s for run in runs for s in run]) == [old.id]
    assert {_blob(old, 1), _blob(old, 2)} == set(ports.archive.blobs)


async def test_runs_at_once_advance_the_sweep_once(graph: FakeGraph) -> None:
    """A timer run and an operator's at the same moment: the cursor is saved on the ETag it
    was read with, so the run that loses queues nothing and no piece is queued twice."""
    ports = FakePorts(settings=settings(), graph=graph.client(), state=FakeState(interleave=True))
    now = utcnow()
    counts = await asyncio.gather(
        *(queue_next_piece(ports.state, ports.work, RUNS, now) for _ in range(4))
    )
    assert counts.count(0) == 3
    sweep, _ = await load(ports.state)
    assert sweep is not None and sweep.runs == 1
    queued = _slices(ports.work)
    assert len(queued) == sum(counts)
    assert queued[-1].until == sweep.cursor
    # The next run takes the next step, not the same one again.
    await queue_next_piece(ports.state, ports.work, RUNS, now + HOUR)
    assert _slices(ports.work)[0].since == sweep.cursor


async def test_a_piece_the_queue_refused_is_queued_by_the_next_run(
    graph: FakeGraph, ports: FakePorts
) -> None:
    """The cursor is saved before the slices are queued; when the queue then refuses them,
    the cursor goes back, so the next run queues that piece (not the one after it) and its
    records arrive, instead of waiting a whole sweep."""
    from shared.workqueue import QueueUnavailable

    start = utcnow() - RUNS * HOUR
    lost = graph.add_record(start - timedelta(days=29, hours=12))  # in the first piece
    ports.work.unavailable = True
    with pytest.raises(QueueUnavailable):
        await queue_next_piece(ports.state, ports.work, RUNS, start)
    assert await load(ports.state) == (None, None)  # as before the run
    ports.work.unavailable = False
    runs = await _sweep(ports, start + HOUR, runs=1)
    assert runs[0][0].since == reconcile.oldest_listable(start + HOUR)
    assert await _work(ports, runs[0]) == [lost.id]
    assert set(ports.archive.blobs) == {_blob(lost, 1)}


async def test_an_unreadable_cursor_starts_a_new_sweep(ports: FakePorts) -> None:
    await ports.state.save(SWEEP_BLOB, {"cursor": "junk"})
    now = utcnow()
    await queue_next_piece(ports.state, ports.work, RUNS, now)
    pieces = _slices(ports.work)
    assert pieces[0].since == reconcile.oldest_listable(now)
    sweep, _ = await load(ports.state)
    assert sweep is not None and sweep.runs == 1 and sweep.frame_end == now


def _sweep_problems(problems: list[str]) -> list[str]:
    return [p for p in problems if "sweep" in p]


async def test_health_shows_the_sweeps_progress_and_names_one_that_stopped(
    graph: FakeGraph, ports: FakePorts
) -> None:
    ports.settings = settings(RECONCILE_SWEEP_HOURS=str(RUNS))
    fresh = await collect(ports, check_subscription=False)
    assert fresh.reconcile_sweep == {"state": "not started", "runsPerSweep": RUNS}
    assert not _sweep_problems(fresh.problems)

    now = utcnow()
    await _sweep(ports, now - 3 * HOUR, runs=RUNS // 2)
    half = (await collect(ports, check_subscription=False)).reconcile_sweep
    assert half["state"] == "in progress" and half["runs"] == RUNS // 2
    assert half["fraction"] == pytest.approx(0.5, abs=0.01)
    assert half["lastCompletedAt"] is None

    await _sweep(ports, now, runs=RUNS - RUNS // 2)
    facts = await collect(ports, check_subscription=False)
    done = facts.reconcile_sweep
    assert done["state"] == "complete" and done["fraction"] == 1.0 and done["runs"] == RUNS
    assert done["lastCompletedAt"] == (now + (RUNS - RUNS // 2 - 1) * HOUR).isoformat()
    assert not _sweep_problems(facts.problems)

    # The timer stopped: the last sweep completed longer ago than two sweeps and two hours.
    stopped = FakePorts(settings=ports.settings, graph=ports.graph)
    await _sweep(stopped, now - 2 * RUNS * HOUR - 3 * HOUR - RUNS * HOUR)
    (problem,) = _sweep_problems((await collect(stopped, check_subscription=False)).problems)
    assert "has not completed since" in problem and "is the reconcile timer running?" in problem
    assert f"one takes {RUNS} hourly runs" in problem
