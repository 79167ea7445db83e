"""Run by bench/memory.py in a fresh process: archive one record, report peak memory.

``python -m bench.memory_child <warm-up record id> <record id>`` (or ``--burst <warm-up id>
<id,id,...>``: all of them at once) with the app settings in the environment. Prints one JSON line: the idle RSS after the app's imports, the RSS after
archiving a small warm-up record (runtime built, token fetched, connections open), the peak
RSS of the process after archiving the big record (VmHWM: ru_maxrss without what Linux carries
over from the parent across exec), and what was archived.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from pathlib import Path

import orjson


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_kib() -> int:
    return _status("VmRSS")


def peak_kib() -> int:
    """Peak RSS of this process image. VmHWM, not ru_maxrss: on Linux ru_maxrss survives
    exec, so a child of a big parent starts with the parent's peak; VmHWM starts afresh."""
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def archive(warm_id: str, record_id: str) -> dict[str, object]:
    from shared.archiver import archive_record
    from shared.messages import Source, WorkItem
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    rt = build_runtime(load_settings())
    try:
        await archive_record(rt, WorkItem.new(warm_id, Source.NOTIFICATION))
        gc.collect()
        warm_rss, warm_peak = rss_kib(), peak_kib()
        t0 = time.perf_counter()
        result = await archive_record(rt, WorkItem.new(record_id, Source.NOTIFICATION))
        seconds = time.perf_counter() - t0
        peak = peak_kib()
        ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        gc.collect()
        after = rss_kib()
    finally:
        await rt.close()
    return {
        "warm_rss_kib": warm_rss,
        "warm_peak_kib": warm_peak,
        "peak_kib": peak,
        "ru_maxrss_kib": ru_maxrss,
        "rss_after_kib": after,
        "seconds": round(seconds, 3),
        "bytes": result.bytes,
        "pages": result.pages,
        "written": result.written,
    }


async def burst(warm_id: str, record_ids: list[str]) -> dict[str, object]:
    """Archive every record at once, as a host batch of large meetings would (batchSize 32 +
    newBatchThreshold 16 = 48 in flight); ARCHIVE_MAX_LARGE_FETCHES bounds how many of them
    hold pages at the same time."""
    from shared.archiver import archive_record
    from shared.messages import Source, WorkItem
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    rt = build_runtime(load_settings())
    try:
        await archive_record(rt, WorkItem.new(warm_id, Source.NOTIFICATION))
        gc.collect()
        warm_rss = rss_kib()
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(archive_record(rt, WorkItem.new(r, Source.NOTIFICATION)) for r in record_ids)
        )
        seconds = time.perf_counter() - t0
        peak = peak_kib()
    finally:
        await rt.close()
    return {
        "warm_rss_kib": warm_rss,
        "peak_kib": peak,
        "seconds": round(seconds, 3),
        "bytes": sum(r.bytes for r in results),
        "pages": sum(r.pages for r in results),
        "records": len(results),
        "large_fetches": rt.settings.max_large_fetches,
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--burst":
        import function_app

        gc.collect()
        out = {"idle_rss_kib": rss_kib(), **asyncio.run(burst(argv[1], argv[2].split(",")))}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return 0
    warm_id, record_id = argv
    import function_app  # noqa: F401  (everything the worker imports before any invocation)

    gc.collect()
    idle = rss_kib()
    out: dict[str, object] = {
        "idle_rss_kib": idle,
        "idle_peak_kib": peak_kib(),
        "ru_maxrss_at_idle_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    out.update(asyncio.run(archive(warm_id, record_id)))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
