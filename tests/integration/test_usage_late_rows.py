"""The usage logs by cloud, against the simulator and Azurite: a cloud whose Graph does not
serve getDirectRoutingCalls answers it 400, so USAGE_LOGS_KINDS leaves it out there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.clock import utcnow
from shared.usage.kinds import UsageKind
from shared.usage.sync import sync_usage_logs

pytestmark = pytest.mark.e2e


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
