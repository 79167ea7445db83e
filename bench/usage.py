"""Usage logs: how fast does a backfill archive PSTN rows, against the same writes done bare?

In process, one Runtime: ``copy_range`` over N simulator rows (1,000 a page, one page paced
at a time, each page's rows uploaded with write-if-absent, WRITE_CONCURRENCY at once), then
the same range again (every row already archived: the overlap cost of the hourly run). The
floor: the same row bytes uploaded straight with the SDK (``upload_blob(overwrite=False)``),
with the same concurrency, no Graph, no parsing. CPU is this process's (the simulator and
Azurite run in their own).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson

from bench.config import Config
from bench.report import PartResult, Row
from bench.services import app_environ, create_container, self_cpu_seconds, stack, unique


async def _floor(conn: str, rows: list[dict[str, Any]], container: str, concurrency: int) -> None:
    from azure.storage.blob.aio import ContainerClient

    client = ContainerClient.from_connection_string(conn, container)
    limit = asyncio.Semaphore(concurrency)

    async def one(row: dict[str, Any]) -> None:
        async with limit:
            await client.upload_blob(f"floor/{row['id']}.json", orjson.dumps(row), overwrite=False)

    try:
        await client.create_container()
        await asyncio.gather(*(one(r) for r in rows))
    finally:
        await client.close()


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    from shared.clock import utcnow
    from shared.runtime import build_runtime
    from shared.settings import load_settings
    from shared.usage.kinds import UsageKind
    from shared.usage.sync import WRITE_CONCURRENCY, copy_range

    part = PartResult("usage")
    count = cfg.usage_rows
    with stack() as st:
        assert st.sim is not None
        now = utcnow()
        since, until = now - timedelta(days=10), now
        st.sim.client.add_usage_rows("pstn", count, since, until - timedelta(minutes=1))
        rows = st.sim.client.usage_rows("pstn")
        container = unique("c")
        create_container(st.conn, container)
        env = st.app_env(unique("q"), container)

        async def measure() -> dict[str, float]:
            rt = build_runtime(load_settings(env))
            try:
                c0, t0 = self_cpu_seconds(), time.perf_counter()
                first = await copy_range(rt, UsageKind.PSTN, since, until)
                c1, t1 = self_cpu_seconds(), time.perf_counter()
                again = await copy_range(rt, UsageKind.PSTN, since, until)
                c2, t2 = self_cpu_seconds(), time.perf_counter()
                await _floor(st.conn, rows, unique("f"), WRITE_CONCURRENCY)
                c3, t3 = self_cpu_seconds(), time.perf_counter()
            finally:
                await rt.close()
            assert first.written == count and again.archived == count, (first, again)
            return {
                "first_s": t1 - t0,
                "first_cpu_s": c1 - c0,
                "again_s": t2 - t1,
                "again_cpu_s": c2 - c1,
                "floor_s": t3 - t2,
                "floor_cpu_s": c3 - c2,
                "pages": first.pages,
            }

        with app_environ(env):
            m = asyncio.run(measure())
    log(f"usage: {count} rows: {m}")
    rate, floor_rate = count / m["first_s"], count / m["floor_s"]
    cpu_ms, floor_cpu_ms = m["first_cpu_s"] * 1000 / count, m["floor_cpu_s"] * 1000 / count
    part.details = {"rows": count, **{k: round(v, 3) for k, v in m.items()}}
    part.rows = [
        Row(
            "usage",
            f"usage backfill, {count:,} PSTN rows: rows archived/s",
            rate,
            "/s",
            floor_rate,
            "SDK uploads alone",
            ratio=rate / floor_rate,
            note=f"{m['pages']:.0f} pages",
        ),
        Row(
            "usage",
            "usage backfill: CPU ms per row (this process)",
            cpu_ms,
            "ms",
            floor_cpu_ms,
            "SDK uploads alone",
            ratio=cpu_ms / floor_cpu_ms if floor_cpu_ms else None,
        ),
        Row(
            "usage",
            "usage overlap re-read (all archived): rows/s",
            count / m["again_s"],
            "/s",
            note=f"CPU {m['again_cpu_s'] * 1000 / count:.2f} ms per row",
        ),
    ]
    return part
