"""Memory: the peak RSS of archiving one 10,000-session record, against the size of its JSON;
and of a burst of large meetings archived at once, with ARCHIVE_MAX_LARGE_FETCHES at its
default and with no bound (as many as the burst), to show what the bound holds back.

A fresh process (bench/memory_child.py) imports function_app.py, notes its idle RSS, archives
a small record to warm up (runtime, token, connections), then the big record through
``archive_record``; the figure is the peak RSS (VmHWM; ru_maxrss would include the parent's
peak, which Linux carries across exec) minus the idle RSS. Target: ≤ 64 MB above idle.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import orjson

from bench.config import Config
from bench.report import PartResult, Row
from bench.services import ROOT, CpuMeter, create_container, stack, unique

TARGET_MIB = 64.0
MIB = 1024 * 1024


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("memory")
    with stack() as st:
        assert st.sim is not None
        t = time.perf_counter()
        big = st.sim.client.create_record(
            sessions=cfg.memory_sessions, participants=cfg.memory_participants, notify=False
        )["id"]
        warm = st.sim.client.create_record(sessions=5, participants=3, notify=False)["id"]
        container = unique("c")
        create_container(st.conn, container)
        # Memory of one fetch in one go: Graph's older per-record revision (40 / 20 s) rather
        # than the strict 50 / 5 min, which would pause and resume it (tests cover that).
        st.sim.client.set_faults(record_limits=False)
        env = {
            **st.app_env(unique("q"), container),
            "GRAPH_RECORD_FIRST_PAGE_PACE": "40/20",
            "GRAPH_RECORD_NEXT_PAGES_PACE": "40/20",
            "ARCHIVE_FETCH_BUDGET_SECONDS": "3600",
            "PYTHONPATH": str(ROOT),
        }
        log(
            f"memory: {cfg.memory_sessions}-session record created ({time.perf_counter() - t:.1f}s)"
        )
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        meter = CpuMeter(st.pids()).start()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory_child", warm, big],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            timeout=600,
        )
        cpu = meter.stop()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu["cpu_child_s"] = round(
            children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime, 3
        )
        busy = sum(v for k, v in cpu.items() if k.startswith("cpu_"))
        cpu["machine_busy"] = round(busy / (cpu["wall_s"] * (os.cpu_count() or 1)), 3)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child failed:\n{proc.stderr.decode()[-3000:]}")
        res = orjson.loads(proc.stdout.strip().splitlines()[-1])
        stats = st.sim.client.stats()
        log(f"memory: burst of {cfg.memory_burst_records} large records")
        burst_ids = [
            st.sim.client.create_record(
                sessions=cfg.memory_burst_sessions, participants=150, notify=False
            )["id"]
            for _ in range(cfg.memory_burst_records)
        ]
        bursts: dict[str, dict[str, int | float]] = {}
        for label, bound in (("bounded", None), ("unbounded", cfg.memory_burst_records)):
            burst_container = unique("c")
            create_container(st.conn, burst_container)
            burst_env = {**env, "ARCHIVE_CONTAINER": burst_container}
            if bound is not None:
                burst_env["ARCHIVE_MAX_LARGE_FETCHES"] = str(bound)
            done = subprocess.run(
                [sys.executable, "-m", "bench.memory_child", "--burst", warm, ",".join(burst_ids)],
                cwd=ROOT,
                env={**os.environ, **burst_env},
                capture_output=True,
                timeout=900,
            )
            if done.returncode != 0:
                raise RuntimeError(f"memory burst failed:\n{done.stderr.decode()[-3000:]}")
            bursts[label] = orjson.loads(done.stdout.strip().splitlines()[-1])
    above_idle = (res["peak_kib"] - res["idle_rss_kib"]) / 1024
    above_warm = (res["peak_kib"] - res["warm_rss_kib"]) / 1024
    json_mib = res["bytes"] / MIB
    part.details = {
        "record": {
            "sessions": cfg.memory_sessions,
            "participants": cfg.memory_participants,
            "json_bytes": res["bytes"],
            "pages": res["pages"],
        },
        "child": res,
        "peak_above_idle_mib": round(above_idle, 1),
        "peak_above_warm_mib": round(above_warm, 1),
        "graph_requests": sum(int(v) for v in stats["requests"].values()),
        "cpu": {f"{cfg.memory_sessions}-session record": cpu},
        "burst": bursts,
    }
    label = f"memory, {cfg.memory_sessions:,}-session record"
    part.rows = [
        Row("memory", f"{label}: JSON size", json_mib, "MB", note=f"{res['pages']} Graph pages"),
        Row(
            "memory",
            f"{label}: peak RSS above idle",
            above_idle,
            "MB",
            json_mib,
            "JSON size",
            target=f"≤ {TARGET_MIB:.0f} MB",
            ratio=above_idle / json_mib,
            met=above_idle <= TARGET_MIB,
            note=f"{above_warm:.0f} MB above the warmed-up process; {res['seconds']:.1f} s",
        ),
    ]
    bounded, unbounded = bursts["bounded"], bursts["unbounded"]
    peak_b = (bounded["peak_kib"] - bounded["warm_rss_kib"]) / 1024
    peak_u = (unbounded["peak_kib"] - unbounded["warm_rss_kib"]) / 1024
    burst_label = (
        f"memory, {cfg.memory_burst_records} records of {cfg.memory_burst_sessions:,} sessions "
        "at once"
    )
    part.rows.append(
        Row(
            "memory",
            f"{burst_label}: peak RSS above warm, {bounded['large_fetches']} large fetches at a time",
            peak_b,
            "MB",
            peak_u,
            f"all {cfg.memory_burst_records} at once",
            target="≤ 1 GB (half a 2 GB Flex instance)",
            ratio=peak_b / peak_u if peak_u > 0 else None,
            met=peak_b <= 1024,
            note=(
                f"{bounded['bytes'] / MIB:.0f} MB of JSON; {bounded['seconds']:.1f} s bounded, "
                f"{unbounded['seconds']:.1f} s unbounded"
            ),
        )
    )
    return part
