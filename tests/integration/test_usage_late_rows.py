"""Late usage rows and the logs by cloud, against the simulator and Azurite.

Rows can appear later than the usage reports' usual 24-48 hours: every run re-reads at least
3 days, and once every USAGE_LOGS_REREAD_EVERY_HOURS (timed by the state store, whatever the
clock's hour) a run re-reads USAGE_LOGS_REREAD_DAYS. The day is scaled by moving the stored
time of the last deep re-read back, as a day passing would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.clock import utcnow
from shared.usage import reread
from shared.usage.kinds import UsageKind
from shared.usage.sync import KindReport, sync_usage_logs

pytestmark = pytest.mark.e2e


async def _runtime(make_runtime: Any, **settings: str) -> Any:
    rt = make_runtime(USAGE_LOGS_BACKFILL_DAYS="10", USAGE_LOGS_KINDS="pstn", **settings)
    await rt.archive.container.create_container()
    return rt


def _pstn(reports: list[KindReport]) -> KindReport:
    (report,) = [r for r in reports if r.kind is UsageKind.PSTN]
    assert report.stopped is None
    return report


async def test_late_rows_are_read_within_3_days_every_run_and_7_days_once_a_day(
    fresh_sim: Any, make_runtime: Any
) -> None:
    sim, now = fresh_sim.client, utcnow()
    sim.add_usage_rows("pstn", 20, now - timedelta(days=9), now - timedelta(minutes=5))
    rt = await _runtime(make_runtime)
    first = _pstn(await sync_usage_logs(rt))  # the first run reads back 10 days: deep
    assert first.written == 20
    assert await reread.last_deep(rt.state, UsageKind.PSTN) is not None

    # 60 hours late: past the usual 48, inside the 3 days every run re-reads.
    sim.add_usage_rows("pstn", 1, now - timedelta(hours=61), now - timedelta(hours=60))
    # 5 days late: only a deep re-read finds it.
    sim.add_usage_rows("pstn", 1, now - timedelta(days=5, hours=1), now - timedelta(days=5))
    second = _pstn(await sync_usage_logs(rt))
    assert second.watermark is not None
    assert second.since <= second.watermark - timedelta(days=3)
    assert second.since > utcnow() - timedelta(days=4)  # not deep: the last one is recent
    assert second.written == 1

    # A day later by the state store's clock (not the wall clock's hour): the deep re-read.
    day_ago = utcnow() - timedelta(hours=24, minutes=1)
    await reread.deep_done(rt.state, UsageKind.PSTN, day_ago)
    third = _pstn(await sync_usage_logs(rt))
    assert third.since <= utcnow() - timedelta(days=7)
    assert third.written == 1
    assert len(sim.usage_rows("pstn")) == first.written + second.written + third.written
    fourth = _pstn(await sync_usage_logs(rt))  # the deep re-read is done for a day
    assert fourth.since > utcnow() - timedelta(days=4) and fourth.written == 0


async def test_reread_every_0_hours_makes_every_run_deep(fresh_sim: Any, make_runtime: Any) -> None:
    sim, now = fresh_sim.client, utcnow()
    sim.add_usage_rows("pstn", 3, now - timedelta(days=2), now - timedelta(minutes=5))
    rt = await _runtime(make_runtime, USAGE_LOGS_REREAD_EVERY_HOURS="0", USAGE_LOGS_REREAD_DAYS="6")
    assert _pstn(await sync_usage_logs(rt)).written == 3
    sim.add_usage_rows("pstn", 1, now - timedelta(days=5, hours=1), now - timedelta(days=5))
    again = _pstn(await sync_usage_logs(rt))
    assert again.since <= utcnow() - timedelta(days=6) and again.written == 1


async def test_direct_routing_is_not_called_where_graph_does_not_serve_it(
    fresh_sim: Any, make_runtime: Any
) -> None:
    """USAGE_LOGS_KINDS by cloud: the simulator as a cloud without getDirectRoutingCalls
    answers it 400, so a sync that called it would fail; PSTN alone is read."""
    sim, now = fresh_sim.client, utcnow()
    sim.set_config(direct_routing_available=0)
    sim.add_usage_rows("pstn", 4, now - timedelta(days=1), now - timedelta(minutes=5))
    sim.add_usage_rows("directrouting", 4, now - timedelta(days=1), now - timedelta(minutes=5))
    rt = make_runtime(USAGE_LOGS_BACKFILL_DAYS="2", USAGE_LOGS_KINDS="pstn")
    await rt.archive.container.create_container()
    reports = await sync_usage_logs(rt)
    assert [r.kind for r in reports] == [UsageKind.PSTN] and reports[0].written == 4
    assert sim.stats()["requests"].get("direct_routing_calls", 0) == 0

    both = make_runtime(USAGE_LOGS_BACKFILL_DAYS="2", USAGE_LOGS_KINDS="pstn,directrouting")
    from shared.graph import GraphError

    with pytest.raises(GraphError, match="400"):  # what calling it there would do
        await sync_usage_logs(both)


async def test_a_403_on_the_usage_logs_is_named_in_health(
    fresh_sim: Any, make_runtime: Any
) -> None:
    from shared import permission
    from shared.graph import Unauthorized
    from shared.status import collect

    rt = await _runtime(make_runtime)
    fresh_sim.client.set_faults(forbidden=True)
    try:
        with pytest.raises(Unauthorized):  # the timer fails loudly, the watermark stays
            await sync_usage_logs(rt)
        facts = await collect(rt, check_subscription=False)
    finally:
        fresh_sim.client.set_faults(forbidden=False)
    assert await permission.current_refusal(rt.state) is not None
    assert any("CallRecords.Read.All" in p and "403" in p for p in facts.problems)
