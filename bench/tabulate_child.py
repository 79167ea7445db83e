"""Run by bench/tabulate.py in a fresh process: tabulate days of the archive, report memory.

``python -m bench.tabulate_child DAY [DAY ...]`` with the app settings in the environment.
Prints one JSON line: the RSS after the imports the timer needs (idle), the peak RSS of the
process (VmHWM) after tabulating, the time, and what was written.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from datetime import date

import orjson

from bench.memory_child import peak_kib, rss_kib


async def run(days: list[date]) -> dict[str, object]:
    from shared.analytics.rebuild import tabulate
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    rt = build_runtime(load_settings())
    try:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        state = await tabulate(rt.archive.container, rt.tables, days)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await rt.close()
    results = state.results
    return {
        "seconds": round(seconds, 3),
        "cpu_s": round(cpu, 3),
        "peak_kib": peak_kib(),
        "records": sum(r.records for r in results),
        "streams": sum(r.streams for r in results),
        "participants": sum(r.participants for r in results),
        "json_bytes": sum(r.json_bytes for r in results),
        "parquet_bytes": {
            t: sum(r.bytes.get(t, 0) for r in results) for t in ("calls", "streams", "participants")
        },
        "per_day": [
            {"day": str(r.day), "records": r.records, "streams": r.streams, "json": r.json_bytes}
            for r in results
        ],
    }


def main(argv: list[str]) -> int:
    import pyarrow  # noqa: F401  (what the timer's process has loaded before it starts)

    import function_app  # noqa: F401
    import shared.analytics.rebuild  # noqa: F401

    gc.collect()
    out: dict[str, object] = {"idle_rss_kib": rss_kib()}
    out.update(asyncio.run(run([date.fromisoformat(d) for d in argv])))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
