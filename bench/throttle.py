"""Throttle: the simulator enforces Graph's 1,500 requests / 20 s per app (faults ``throttle``,
``app_limit``, ``window_seconds``); how much of that budget does the archiver sustain, and how
many of its requests are answered 429?

The real path: devtools.host archives small records queued ahead (more than the budget allows
in the run). The simulator's counters are read every 5 s. Sustained share = Graph requests
answered 200 per second from the end of the first window (20 s, so the empty window at the
start cannot flatter the figure) to the end of the run, divided by 1,500 / 20 s = 75/s. The
429 share is over every Graph read request of the whole run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.archiver import READ_KINDS, enqueue
from bench.config import Config
from bench.report import PartResult, Row
from bench.services import CpuMeter, HostProcess, create_container, create_queue, stack, unique

BUDGET_TARGET = 0.9
THROTTLED_TARGET = 0.01


def _counts(stats: dict[str, Any]) -> dict[str, int]:
    ok = throttled = total = 0
    for kind in READ_KINDS:
        for status, n in stats.get("responses_by_kind", {}).get(kind, {}).items():
            total += int(n)
            if status == "200":
                ok += int(n)
            elif status == "429":
                throttled += int(n)
    return {"ok": ok, "throttled": throttled, "total": total}


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("throttle")
    budget = cfg.throttle_limit / cfg.throttle_window
    with stack() as st:
        assert st.sim is not None
        t = time.perf_counter()
        ids = [
            st.sim.client.create_record(sessions=5, participants=3, notify=False)["id"]
            for _ in range(cfg.throttle_records)
        ]
        log(f"throttle: {len(ids)} records created ({time.perf_counter() - t:.1f}s)")
        st.sim.client.set_faults(
            reset=True,
            throttle=True,
            app_limit=cfg.throttle_limit,
            window_seconds=float(cfg.throttle_window),
        )
        # A backlog (as after an outage, or a burst of calls) that outlasts the budget: queued
        # before the host starts, so the clock starts with the host and work is never short.
        queue, container = unique("q"), unique("c")
        create_queue(st.conn, queue)
        create_container(st.conn, container)
        t = time.perf_counter()
        asyncio.run(enqueue(st.conn, queue, ids))
        log(f"throttle: {len(ids)} ids queued in {time.perf_counter() - t:.1f}s; starting the host")
        st.sim.client.reset_stats()
        host = HostProcess(st.app_env(queue, container), cfg.logdir / "throttle-host.log")
        series = []
        try:
            host.start()
            meter = CpuMeter({**st.pids(), "host": host.pid}).start()
            t0 = time.perf_counter()
            at_window: dict[str, Any] = {}
            for mark in range(5, cfg.throttle_seconds + 1, 5):
                time.sleep(max(0.0, t0 + mark - time.perf_counter()))
                stats = st.sim.client.stats()
                archived, failed = host.poll_log()  # the archive's listing, the host's counters
                point: dict[str, Any] = {
                    "t": mark,
                    **_counts(stats),
                    "archived": archived,
                    "failed": failed,
                    "requeued": host.requeued,
                }
                point["faults"] = dict(stats.get("faults", {}))
                series.append(point)
                if mark == cfg.throttle_window:
                    at_window = point
            cpu = meter.stop()
            final = series[-1]
            tokens = st.sim.client.stats()["token_requests"]
        finally:
            host.stop()
    seconds = cfg.throttle_seconds - cfg.throttle_window
    sustained = (final["ok"] - at_window["ok"]) / seconds
    share = sustained / budget
    throttled_share = final["throttled"] / final["total"] if final["total"] else 0.0
    part.details = {
        "limit": cfg.throttle_limit,
        "window_s": cfg.throttle_window,
        "run_s": cfg.throttle_seconds,
        "records_queued": len(ids),
        "sustained_requests_per_s": round(sustained, 2),
        "whole_run_requests_per_s": round(final["ok"] / cfg.throttle_seconds, 2),
        "budget_per_s": budget,
        "throttled_share": round(throttled_share, 4),
        "token_requests": tokens,
        "final": final,
        "series": series,
        "cpu": {"throttled run": cpu},
        "log": str(host.log_path),
    }
    window = f"{cfg.throttle_window}-{cfg.throttle_seconds} s"
    part.rows = [
        Row(
            "throttle",
            f"throttle {cfg.throttle_limit:,}/{cfg.throttle_window} s: Graph requests/s sustained",
            sustained,
            "/s",
            budget,
            "budget",
            target=f"≥ {BUDGET_TARGET:.0%} of budget",
            ratio=share,
            met=share >= BUDGET_TARGET,
            note=(
                f"t = {window}; whole run {final['ok'] / cfg.throttle_seconds:.1f}/s; "
                f"{final['archived']} records archived in {cfg.throttle_seconds} s"
            ),
        ),
        Row(
            "throttle",
            f"throttle {cfg.throttle_limit:,}/{cfg.throttle_window} s: share of requests answered 429",
            throttled_share * 100,
            "%",
            target=f"< {THROTTLED_TARGET:.0%}",
            ratio=throttled_share / THROTTLED_TARGET,
            met=throttled_share < THROTTLED_TARGET,
            note=f"{final['throttled']:,} of {final['total']:,}",
        ),
    ]
    return part
