"""The rolling sweep's arithmetic: a frame fixed at its start, walked oldest first, complete in
exactly RECONCILE_SWEEP_HOURS runs, never listing what Graph has dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from shared.reconcile import oldest_listable
from shared.sweep import Sweep, next_step, overdue, progress_facts

T0 = datetime(2026, 3, 1, 12, 37, tzinfo=UTC)


def _run_sweep(runs: int, start: datetime) -> tuple[Sweep, list[tuple[datetime, datetime]]]:
    sweep: Sweep | None = None
    pieces: list[tuple[datetime, datetime]] = []
    for i in range(runs):
        sweep, piece = next_step(sweep, start + timedelta(hours=i), runs)
        assert piece is not None
        pieces.append(piece)
    assert sweep is not None
    return sweep, pieces


def test_one_sweep_lists_all_30_days_once_in_exactly_the_runs_set() -> None:
    sweep, pieces = _run_sweep(168, T0)
    assert sweep.done and sweep.runs == 168 and sweep.last_completed_at == T0 + timedelta(hours=167)
    assert pieces[0][0] == oldest_listable(T0)
    assert pieces[-1][1] == T0  # the frame ends where the sweep started
    for (_, end), (start, _) in pairwise(pieces):
        assert end == start  # no gap, no overlap
    # Each piece is still listable when its run comes (oldest first outruns Graph's expiry).
    for i, (start, _) in enumerate(pieces):
        assert start >= oldest_listable(T0 + timedelta(hours=i))
    assert max(end - start for start, end in pieces) <= timedelta(hours=4, minutes=18)


def test_the_next_run_begins_a_new_sweep_at_its_own_time() -> None:
    sweep, _ = _run_sweep(3, T0)
    later = T0 + timedelta(hours=3)
    again, piece = next_step(sweep, later, 3)
    assert piece is not None and piece[0] == oldest_listable(later)
    assert again.frame_end == later and again.runs == 1 and not again.done
    assert again.last_completed_at == T0 + timedelta(hours=2)
    assert Sweep.from_json(again.to_json()) == again


def test_missed_runs_skip_only_what_graph_no_longer_keeps() -> None:
    sweep, _ = next_step(None, T0, 168)
    ten_days_later = T0 + timedelta(days=10)
    resumed, piece = next_step(sweep, ten_days_later, 168)
    assert piece is not None and piece[0] == oldest_listable(ten_days_later)
    assert resumed.frame_end == T0  # the same sweep continues


def test_health_facts_and_an_overdue_sweep() -> None:
    assert progress_facts(None, 168)["state"] == "not started"
    sweep, _ = _run_sweep(4, T0)
    facts = progress_facts(sweep, 4)
    assert facts["state"] == "complete" and facts["fraction"] == 1.0
    assert facts["lastStartedAt"] == T0.isoformat()  # its first run; completed at its fourth
    assert facts["lastCompletedAt"] == (T0 + timedelta(hours=3)).isoformat()
    assert overdue(sweep, 4, T0 + timedelta(hours=5)) is None
    problem = overdue(sweep, 4, T0 + timedelta(hours=30))
    assert problem and "reconcile timer" in problem
    assert Sweep.from_json({"cursor": "junk"}) is None
