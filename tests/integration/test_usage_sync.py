"""The hourly PSTN / Direct Routing run against the simulator and Azurite: every row archived
exactly once across overlapping runs, as Graph returned it, with its metadata, and counted
for health."""

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
from shared.usage.sync import KindReport, sync_usage_logs
from shared.usage.watermark import WatermarkStore

pytestmark = pytest.mark.e2e


async def _runtime(make_runtime: Any, days: int) -> Any:
    rt = make_runtime(USAGE_LOGS_BACKFILL_DAYS=str(days))
    await rt.archive.container.create_container()
    return rt


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
