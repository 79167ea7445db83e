"""The rolling sweep: every record Graph still keeps is compared with the archive once a sweep.

The hourly reconciliation looks at recent start times only (the last hours, 48 h once a day),
but Graph publishes later versions of a call without a time limit: "Subsequent versions of a
callRecord may be created beyond the stated latencies"
(learn.microsoft.com/graph/changenotifications-for-callrecords, and the callRecords FAQ in
learn.microsoft.com/graph/api/resources/callrecords-api-overview). A lost notification for
the version 2 of a five-day-old call would otherwise never be archived.

So each reconcile run also queues the next piece of a sweep over the whole 30 days Graph keeps.
A sweep fixes its frame when it starts, [start - 30 days, start), and walks it oldest first in
``RECONCILE_SWEEP_HOURS`` equal steps, one per run: the oldest start times are listed before
they age out, every start time in the frame is listed once, and a sweep completes in exactly
that many runs (weekly with the hourly timer and the default 168). Start times after the
frame's end belong to the next sweep (and to the hourly passes meanwhile). The cursor lives in
the state store, saved on the ETag it was read with, so a run that overlaps another (a timer
and an operator's manual run) queues nothing twice and loses no step.

docs/operations.md has the List-request arithmetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.clock import parse_graph_datetime, utcnow
from shared.messages import ControlItem
from shared.ports import StatePort, WorkPort
from shared.reconcile import RETENTION, RETENTION_MARGIN, days, oldest_listable

log = logging.getLogger(__name__)

SWEEP_BLOB = "reconcile-sweep.json"
FRAME = RETENTION - RETENTION_MARGIN  # what a sweep covers: everything Graph still lists


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt else None


def _time(value: object) -> datetime | None:
    try:
        return parse_graph_datetime(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Sweep:
    """One sweep in progress (``frame_start``..``frame_end`` listed up to ``cursor``), and the
    facts of the last one that completed."""

    frame_start: datetime
    frame_end: datetime
    cursor: datetime
    runs: int  # runs of this sweep so far
    started_at: datetime
    last_completed_at: datetime | None = None
    last_started_at: datetime | None = None

    @classmethod
    def begin(cls, now: datetime, previous: Sweep | None = None) -> Sweep:
        start = oldest_listable(now)
        return cls(
            frame_start=start,
            frame_end=now,
            cursor=start,
            runs=0,
            started_at=now,
            last_completed_at=previous.last_completed_at if previous else None,
            last_started_at=previous.last_started_at if previous else None,
        )

    @property
    def done(self) -> bool:
        return self.cursor >= self.frame_end

    @property
    def fraction(self) -> float:
        span = (self.frame_end - self.frame_start).total_seconds()
        return (
            1.0 if span <= 0 else min(1.0, (self.cursor - self.frame_start).total_seconds() / span)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "frameStart": _iso(self.frame_start),
            "frameEnd": _iso(self.frame_end),
            "cursor": _iso(self.cursor),
            "runs": self.runs,
            "startedAt": _iso(self.started_at),
            "lastCompletedAt": _iso(self.last_completed_at),
            "lastStartedAt": _iso(self.last_started_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Sweep | None:
        if not data:
            return None
        frame_start, frame_end = _time(data.get("frameStart")), _time(data.get("frameEnd"))
        cursor, started = _time(data.get("cursor")), _time(data.get("startedAt"))
        runs = data.get("runs")
        if not (frame_start and frame_end and cursor and started and isinstance(runs, int)):
            return None  # unreadable: a new sweep starts (nothing is lost, only repeated)
        return cls(
            frame_start,
            frame_end,
            cursor,
            runs,
            started,
            _time(data.get("lastCompletedAt")),
            _time(data.get("lastStartedAt")),
        )


def next_step(
    sweep: Sweep | None, now: datetime, sweep_runs: int
) -> tuple[Sweep, tuple[datetime, datetime] | None]:
    """The sweep after this run and the start times this run lists (None: nothing left that
    Graph still keeps). Pure: the caller loads and saves."""
    if sweep is None or sweep.done:
        sweep = Sweep.begin(now, sweep)
    step = (sweep.frame_end - sweep.frame_start) / max(1, sweep_runs)
    # Runs missed (the app stopped for days) do not make the sweep list what Graph has dropped.
    start = max(sweep.cursor, oldest_listable(now))
    end = min(start + step, sweep.frame_end)
    runs = sweep.runs + 1
    if runs >= sweep_runs:
        end = sweep.frame_end  # the last run takes whatever rounding left
    advanced = replace(sweep, cursor=end, runs=runs)
    if advanced.done:
        advanced = replace(advanced, last_completed_at=now, last_started_at=sweep.started_at)
    return advanced, (start, end) if start < end else None


async def load(state: StatePort) -> tuple[Sweep | None, str | None]:
    data, etag = await state.load(SWEEP_BLOB)
    return Sweep.from_json(data), etag


async def queue_next_piece(
    state: StatePort, work: WorkPort, sweep_runs: int, now: datetime | None = None
) -> int:
    """Advance the sweep by one run and queue its piece as reconcile slices (cut at UTC
    midnights, the archive's day folders, so no slice spans more than a day); how many.

    The cursor is saved before the slices are queued, so two runs at once queue the piece
    once (a save that loses the race to another run queues nothing); a run that then fails to
    queue puts the cursor back, so the next run queues the piece instead of the sweep skipping
    it for a week."""
    now = now or utcnow()
    sweep, etag = await load(state)
    advanced, piece = next_step(sweep, now, sweep_runs)
    saved = await state.save(SWEEP_BLOB, advanced.to_json(), etag if etag else "")
    if saved is None:
        log.info("reconcile sweep: another run advanced it first; nothing queued by this one")
        return 0
    if piece is None:
        return 0
    slices = list(days(*piece))
    try:
        await work.put(ControlItem.reconcile_slice(start, end) for start, end in slices)
    except Exception:
        if sweep is None:
            await state.delete(SWEEP_BLOB)
        else:
            await state.save(SWEEP_BLOB, sweep.to_json(), saved)  # lost race: that run queues
        raise
    log.info(
        "reconcile sweep run %d of %d: %s..%s queued as %d slice(s), %.0f%% of the sweep%s",
        advanced.runs,
        sweep_runs,
        _iso(piece[0]),
        _iso(piece[1]),
        len(slices),
        advanced.fraction * 100,
        " (complete)" if advanced.done else "",
    )
    return len(slices)


def progress_facts(sweep: Sweep | None, sweep_runs: int) -> dict[str, Any]:
    """What health shows of the sweep: where it is and when the last one completed."""
    if sweep is None:
        return {"state": "not started", "runsPerSweep": sweep_runs}
    return {
        "state": "complete" if sweep.done else "in progress",
        "runsPerSweep": sweep_runs,
        "runs": sweep.runs,
        "fraction": round(sweep.fraction, 4),
        "listedUpTo": _iso(sweep.cursor),
        "frame": [_iso(sweep.frame_start), _iso(sweep.frame_end)],
        "startedAt": _iso(sweep.started_at),
        "lastCompletedAt": _iso(sweep.last_completed_at),
        # The last complete sweep's span from its first run to its last: a week by default;
        # much longer means runs were missed (the timer stopped, the app was down).
        "lastStartedAt": _iso(sweep.last_started_at),
    }


def overdue(sweep: Sweep | None, sweep_runs: int, now: datetime) -> str | None:
    """A problem for health when no sweep has completed for well over the time one takes
    (hourly runs): the reconcile timer is not running, or its slices fail."""
    expected = timedelta(hours=sweep_runs) * 2 + timedelta(hours=2)
    if sweep is None:
        return None  # a fresh deployment: the first run starts it
    last = sweep.last_completed_at or sweep.started_at
    if now - last > expected:
        return (
            f"the reconcile sweep of Graph's 30 days has not completed since {_iso(last)} "
            f"(one takes {sweep_runs} hourly runs): is the reconcile timer running?"
        )
    return None
