"""The hourly PSTN / Direct Routing run against the simulator and Azurite: every row archived
exactly once across overlapping runs, faults and the time budget leave the watermark where
the last complete day put it, and a rerun completes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.clock import parse_graph_datetime, utcnow
from shared.status import collect
from shared.usage.health import usage_facts
from shared.usage.kinds import UsageKind
from shared.usage.sync import DAY, KindReport, sync_usage_logs
from shared.usage.watermark import WatermarkStore

pytestmark = pytest.mark.e2e


async def _runtime(make_runtime: Any, days: int) -> Any:
    rt = make_runtime(USAGE_LOGS_BACKFILL_DAYS=str(days))
    await rt.archive.container.create_container()
    return rt


async def names(rt: Any, kind: UsageKind) -> list[str]:
    """Every blob name under the kind's prefix, sorted."""
    found = [b.name async for b in rt.archive.container.list_blobs(name_starts_with=kind.prefix)]
    return sorted(found)


async def archived(rt: Any, kind: UsageKind) -> dict[str, dict[str, Any]]:
    """Blob name -> (row, metadata) for every blob under the kind's prefix."""
    container = rt.archive.container
    listed = [
        b async for b in container.list_blobs(name_starts_with=kind.prefix, include=["metadata"])
    ]
    limit = asyncio.Semaphore(32)

    async def read(name: str) -> Any:
        async with limit:
            return orjson.loads(await (await container.download_blob(name)).readall())

    rows = await asyncio.gather(*(read(b.name) for b in listed))
    return {
        b.name: {"row": row, "metadata": dict(b.metadata or {})}
        for b, row in zip(listed, rows, strict=True)
    }


def expected_name(kind: UsageKind, row: dict[str, Any]) -> str:
    start = parse_graph_datetime(row["startDateTime"])
    return f"{kind.prefix}{start:%Y/%m/%d}/{row['id'].lower()}.json"


def by_kind(reports: list[KindReport]) -> dict[UsageKind, KindReport]:
    return {r.kind: r for r in reports}


async def test_rows_archived_exactly_once_across_two_overlapping_runs(
    fresh_sim: Any, make_runtime: Any
) -> None:
    now = utcnow()
    sim = fresh_sim.client
    sim.add_usage_rows("pstn", 2500, now - timedelta(days=10), now - timedelta(minutes=5))
    sim.add_usage_rows("directrouting", 400, now - timedelta(days=10), now - timedelta(minutes=5))
    rt = await _runtime(make_runtime, days=12)

    first = by_kind(await sync_usage_logs(rt))
    assert first[UsageKind.PSTN].stopped is None, first[UsageKind.PSTN].stopped
    assert (first[UsageKind.PSTN].listed, first[UsageKind.PSTN].written) == (2500, 2500)
    assert first[UsageKind.DIRECT_ROUTING].written == 400
    assert first[UsageKind.PSTN].ranges == 12  # a day at a time: the watermark moves daily

    # Late rows (the log is filled in after the fact, up to 48 h late) inside the overlap.
    late = sim.add_usage_rows("pstn", 30, now - timedelta(hours=44), now - timedelta(hours=2))
    second = by_kind(await sync_usage_logs(rt))
    pstn = second[UsageKind.PSTN]
    assert pstn.stopped is None
    assert pstn.written == 30, "only the late rows are new"
    assert pstn.archived == pstn.listed - 30 > 0, "the overlap re-reads what is archived"

    rows = {r["id"]: r for r in sim.usage_rows("pstn")}
    assert len(rows) == 2530 and set(late) <= set(rows)
    blobs = await archived(rt, UsageKind.PSTN)
    assert sorted(blobs) == sorted(expected_name(UsageKind.PSTN, r) for r in rows.values())
    for name, blob in blobs.items():
        row = blob["row"]
        assert row == rows[row["id"]], f"{name} is not the row as Graph returned it"
        assert blob["metadata"]["usagekind"] == "pstn" and blob["metadata"]["rowid"] == row["id"]
    dr = await archived(rt, UsageKind.DIRECT_ROUTING)
    assert len(dr) == 400
    assert all(b["row"]["callerNumber"].endswith("***") for b in dr.values())  # masked, kept

    mark = await WatermarkStore(rt).load(UsageKind.PSTN)
    assert mark.until is not None and utcnow() - mark.until < timedelta(minutes=2)
    assert mark.written_since(utcnow() - timedelta(hours=24)) == 2530

    facts = await collect(rt, check_subscription=False)
    usage = {f["kind"]: f for f in facts.usage_logs}
    assert usage["pstn"]["archived_last_24h"] == 2530
    assert usage["directrouting"]["archived_last_24h"] == 400
    assert not any("call logs are" in p for p in facts.problems)
    problems: list[str] = []
    await usage_facts(rt, utcnow() + timedelta(hours=7), problems)
    assert any("PSTN call logs are 7.0 h behind" in p for p in problems), problems
    later = await usage_facts(rt, utcnow() + timedelta(hours=25), [])
    assert [f["archived_last_24h"] for f in later] == [0, 0]  # all counted over 24 h ago


async def test_fault_mid_range_keeps_the_watermark_and_a_rerun_completes(
    fresh_sim: Any, make_runtime: Any
) -> None:
    now = utcnow()
    sim = fresh_sim.client
    # 1,100 rows a day: two pages (1,000 a page) per daily window.
    sim.add_usage_rows("pstn", 2200, now - timedelta(days=2), now - timedelta(minutes=1))
    rt = await _runtime(make_runtime, days=2)
    # Window 1: pages 1 and 2; window 2: page 1, then a 503 with a Retry-After too long to
    # wait in place: the run must end there, window 2 half written, the watermark after day 1.
    sim.set_faults(script=["ok", "ok", "ok", "503"], retry_after=30)
    first = by_kind(await sync_usage_logs(rt))[UsageKind.PSTN]
    assert first.stopped and "throttled (503, Retry-After 30 s)" in first.stopped
    assert first.watermark == first.since + DAY, "the watermark covers only complete days"
    first_watermark = first.watermark
    assert first_watermark is not None
    rows = sim.usage_rows("pstn")
    day_one = [
        r for r in rows if first.since <= parse_graph_datetime(r["startDateTime"]) < first_watermark
    ]
    assert first.pages == 3 and first.written == len(day_one) + 1000
    assert len(await names(rt, UsageKind.PSTN)) == first.written

    sim.set_faults(reset=True)
    second = by_kind(await sync_usage_logs(rt))[UsageKind.PSTN]
    assert second.stopped is None
    # Resumed from the watermark, re-reading a week: the first run's full read did not complete.
    assert second.since == first_watermark - timedelta(days=7)
    expected = sorted(
        expected_name(UsageKind.PSTN, r)
        for r in rows
        if parse_graph_datetime(r["startDateTime"]) >= second.since
    )
    assert second.written == len(expected) - first.written
    assert await names(rt, UsageKind.PSTN) == expected
    assert len(expected) >= len(rows) - 2  # the rows of the minutes before the first run
    assert second.watermark is not None and second.watermark > first_watermark


async def test_time_budget_ends_the_run_and_the_next_one_resumes(
    fresh_sim: Any, make_runtime: Any
) -> None:
    now = utcnow()
    fresh_sim.client.add_usage_rows("directrouting", 50, now - timedelta(days=1), now)
    rt = await _runtime(make_runtime, days=2)
    cut = by_kind(await sync_usage_logs(rt, budget=timedelta(0)))
    dr = cut[UsageKind.DIRECT_ROUTING]
    assert dr.stopped and "time budget" in dr.stopped
    assert dr.watermark is None and dr.written == 0
    done = by_kind(await sync_usage_logs(rt))[UsageKind.DIRECT_ROUTING]
    assert done.stopped is None and done.written == 50


async def test_forbidden_raises_and_moves_nothing(fresh_sim: Any, make_runtime: Any) -> None:
    """A missing app role is not a passing fault: the timer fails loudly (the host logs it)."""
    from shared.graph import Unauthorized

    now = utcnow()
    fresh_sim.client.add_usage_rows("pstn", 5, now - timedelta(hours=5), now)
    rt = await _runtime(make_runtime, days=1)
    fresh_sim.client.set_faults(script=["403"])
    with pytest.raises(Unauthorized):
        await sync_usage_logs(rt)
    assert (await WatermarkStore(rt).load(UsageKind.PSTN)).until is None
