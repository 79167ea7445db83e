"""Hostile input: what the worst 1 MiB webhook bodies cost the app (devtools/hostile.py).

Each body is decoded and sorted (``parse_body`` + ``notification_items``, what the webhook does
before it queues) in a fresh child process, so that the resident-set growth is this body's
alone: the peak RSS after minus the peak before (``ru_maxrss``), the Python allocations'
peak (``tracemalloc``, a separate run), and the CPU time (``time.process_time``, the median of
ROUNDS runs). Goal: under 10 MiB and 50 ms for every body.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from bench.config import Config
from bench.report import PartResult, Row

MEMORY_GOAL_MIB = 10.0
CPU_GOAL_MS = 50.0
ROUNDS = 5
CLIENT_STATE = "bench-hostile-client-state-0123456789abcdef"


def _decode(body: bytes) -> int:
    from shared.notifications import BadRequest, notification_items, parse_body

    try:
        return len(notification_items(parse_body(body), CLIENT_STATE).items)
    except BadRequest as exc:
        return -exc.status


def child(path: str) -> None:
    """Measure one body (in this fresh process) and print the figures as JSON."""
    import shared.notifications  # noqa: F401 - imported before the baseline

    body = Path(path).read_bytes()
    _decode(b'{"value":[]}')  # warm the decoders
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    answer = _decode(body)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = []
    for _ in range(ROUNDS):
        t = time.process_time()
        _decode(body)
        cpu.append(time.process_time() - t)
    tracemalloc.start()
    _decode(body)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        json.dumps(
            {
                "answer": answer,
                "rss_growth_kib": max(0, after - before),  # Linux: KiB
                "tracemalloc_peak_bytes": peak,
                "cpu_ms": statistics.median(cpu) * 1000,
            }
        )
    )


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    from devtools.hostile import bodies

    part = PartResult("hostile")
    with tempfile.TemporaryDirectory() as tmp:
        for case in bodies(CLIENT_STATE):
            path = Path(tmp) / "body.json"
            path.write_bytes(case.body)
            out = subprocess.run(
                [sys.executable, "-m", "bench.hostile", str(path)],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            m = json.loads(out.stdout)
            part.details[case.name] = {"bytes": len(case.body), **m}
            answer = m["answer"]
            outcome = f"HTTP {-answer}" if answer < 0 else f"202, {answer} queued"
            mem = max(m["rss_growth_kib"] / 1024, m["tracemalloc_peak_bytes"] / 2**20)
            log(f"hostile: {case.name}: {outcome}, {mem:.2f} MiB, {m['cpu_ms']:.1f} ms")
            part.rows.append(
                Row(
                    "hostile",
                    f"{case.name} ({len(case.body) / 2**20:.2f} MiB): memory (RSS growth or "
                    "tracemalloc peak, the larger)",
                    round(mem, 2),
                    "MiB",
                    target=f"< {MEMORY_GOAL_MIB:g} MiB",
                    met=mem < MEMORY_GOAL_MIB,
                    note=outcome,
                )
            )
            part.rows.append(
                Row(
                    "hostile",
                    f"{case.name}: CPU to decode and sort (median of {ROUNDS})",
                    round(m["cpu_ms"], 2),
                    "ms",
                    target=f"< {CPU_GOAL_MS:g} ms",
                    met=m["cpu_ms"] < CPU_GOAL_MS,
                    note=outcome,
                )
            )
    return part


if __name__ == "__main__":
    child(sys.argv[1])
