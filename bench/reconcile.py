"""Reconcile: Graph List requests per hour for a 100,000-records-a-day tenant, against the List
budget (40 requests / 20 s = 7,200 an hour); the target is at most 10% in steady state.

The tenant is simulated at 1/``reconcile_scale`` of its density (the simulator holds every
record), over the last ``reconcile_hours`` hours of start times. The real path: the hourly
timer's ``queue_slices`` queues the hourly pass, and each slice message is worked through
``reconcile_slice`` as the queue trigger would; the simulator counts the List requests. The
whole-hour slices give the records listed per hour of start time; at full density that is
``scale`` times as many, 60 to a List page. The partial slice of the current hour is counted
as a whole one.

Steady state per hour = 23/24 of an hourly pass (the recent hours) + 1/24 of the deep pass
(48 hours, once a day at RECONCILE_DEEP_PASS_HOUR), + one piece of the rolling 30-day sweep
(30 days / RECONCILE_SWEEP_HOURS of start times per run, shared/sweep.py), + the health
check's one List page per call (a monitor polling every 5 minutes: 12 an hour).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench.config import Config
from bench.cost import ReconcileLoad, Workload
from bench.report import PartResult, Row
from bench.services import app_environ, create_container, stack, unique

TARGET_SHARE = 0.10
HEALTH_CALLS_PER_HOUR = 12


def _list_requests(stats: dict[str, object]) -> int:
    requests = stats.get("requests", {})
    assert isinstance(requests, dict)
    return int(requests.get("list", 0))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


async def _work_queue(rt: object) -> list[tuple[float, int, int]]:
    """Work every queued slice as the queue trigger would (``lifecycle.run_control`` calls
    ``reconcile_slice`` for them); return (hours, records listed, List pages) per slice."""
    from shared.messages import ControlAction, ControlItem, parse_message
    from shared.reconcile import reconcile_slice
    from shared.runtime import Runtime

    assert isinstance(rt, Runtime)
    done: list[tuple[float, int, int]] = []
    while True:
        batch = [m async for m in rt.work.queue.receive_messages(max_messages=32)]
        if not batch:
            return done
        for message in batch:
            item = parse_message(message.content)
            await rt.work.queue.delete_message(message)
            if isinstance(item, ControlItem) and item.action is ControlAction.RECONCILE_SLICE:
                report = await reconcile_slice(rt, item)
                assert report is not None and item.since and item.until
                hours = (item.until - item.since).total_seconds() / 3600
                done.append((hours, report.listed, report.pages))


async def _hourly_pass(env: dict[str, str], now: datetime) -> list[tuple[float, int, int]]:
    from shared import reconcile
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    rt = build_runtime(load_settings(env))
    try:
        await rt.work.ensure()
        await reconcile.queue_slices(rt, timedelta(hours=rt.settings.reconcile_recent_hours), now)
        return await _work_queue(rt)
    finally:
        await rt.close()


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("reconcile")
    per_hour_full = cfg.reconcile_per_day / 24
    per_hour_sim = max(1, round(per_hour_full / cfg.reconcile_scale))
    with stack() as st:
        assert st.sim is not None
        now = datetime.now(UTC)
        t = time.perf_counter()
        # Start times spread evenly over the seeded hours, ending a few minutes ago.
        total = per_hour_sim * cfg.reconcile_hours
        step = timedelta(hours=cfg.reconcile_hours) / total
        for i in range(total):
            start = now - timedelta(minutes=5) - step * i
            st.sim.client.create_record(sessions=1, participants=2, start=start, notify=False)
        log(f"reconcile: {total} records seeded ({time.perf_counter() - t:.1f}s)")
        container = unique("c")
        create_container(st.conn, container)
        env = st.app_env(unique("q"), container)
        st.sim.client.reset_stats()
        with app_environ(env):
            t = time.perf_counter()
            slices = asyncio.run(_hourly_pass(env, now))
            seconds = time.perf_counter() - t
        measured = _list_requests(st.sim.client.stats())
    full = [(listed, pages) for hours, listed, pages in slices if hours >= 1.0]
    assert full, "no whole hour among the slices"
    listed_per_hour = sum(listed for listed, _ in full) / len(full)
    pages_sim = sum(pages for _, pages in full) / len(full)
    # At full density one hour of start times lists scale x as many records, 60 a page; the
    # passes and the sweep piece as the cost model counts them (bench/cost.py, ReconcileLoad).
    workload = Workload.from_code()
    load = ReconcileLoad.at(listed_per_hour * cfg.reconcile_scale, workload)
    per_slice, hourly_pass = load.per_slice, load.hourly_pass
    deep_pass, sweep_piece = load.deep_pass, load.sweep_piece
    steady = load.per_hour(workload) + HEALTH_CALLS_PER_HOUR
    # Graph's List limit as shared/reconcile.py paces to it: 40 / 20 s = 7,200 an hour.
    budget = round(workload.reconcile_list_limit * 3600 / workload.reconcile_list_period_s)
    share = steady / budget
    part.details = {
        "records_per_day": cfg.reconcile_per_day,
        "simulated_density_per_hour": per_hour_sim,
        "scale": cfg.reconcile_scale,
        "seeded_hours": cfg.reconcile_hours,
        "slices": [{"hours": round(h, 3), "listed": n, "pages": p} for h, n, p in slices],
        "list_requests_measured": measured,
        "pages_per_whole_hour_measured": round(pages_sim, 2),
        "pages_per_hour_at_full_density": per_slice,
        "hourly_pass_requests": hourly_pass,
        "deep_pass_requests": deep_pass,
        "sweep_piece_requests": sweep_piece,
        "steady_requests_per_hour": round(steady, 1),
        "share_of_list_budget": round(share, 4),
        "seconds": round(seconds, 1),
    }
    page, sweep_runs = workload.reconcile_page, workload.reconcile_sweep_runs
    label = f"reconcile, {cfg.reconcile_per_day:,} records/day tenant"
    part.rows = [
        Row(
            "reconcile",
            f"{label}: List requests per hour of start time",
            per_slice,
            "",
            per_hour_full / page,
            f"records ÷ {page} a page",
            note=(
                f"measured {pages_sim:.1f} pages for {listed_per_hour:.0f} records an hour at "
                f"1/{cfg.reconcile_scale} density ({measured} List requests in all)"
            ),
        ),
        Row(
            "reconcile",
            f"{label}: hourly pass ({hourly_pass // per_slice} slices)",
            hourly_pass,
            "requests",
            note=f"{len(slices)} worked in {seconds:.1f} s at 1/{cfg.reconcile_scale} density",
        ),
        Row(
            "reconcile",
            f"{label}: daily deep pass ({deep_pass // per_slice} slices)",
            deep_pass,
            "requests",
        ),
        Row(
            "reconcile",
            f"{label}: rolling 30-day sweep, one piece an hour ({sweep_runs:g} a sweep)",
            sweep_piece,
            "requests",
            budget,
            "List budget",
            ratio=sweep_piece / budget,
        ),
        Row(
            "reconcile",
            f"{label}: List requests per hour, steady state (with the sweep and health)",
            steady,
            "/h",
            budget,
            "List budget",
            target="≤ 10% of the budget",
            ratio=share,
            met=share <= TARGET_SHARE,
        ),
    ]
    return part
