"""The simulator's getPstnCalls / getDirectRoutingCalls, through the app's own Graph client:
URL syntax, the 90-day check with Graph's error shape, inclusive/exclusive ends, paging with
the documented next links, the per-log throttle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.graph import GraphError, Throttled, first_page
from shared.usage.kinds import UsageKind
from shared.usage.ranges import function_path

pytestmark = pytest.mark.e2e

START = datetime(2026, 9, 1, tzinfo=UTC)


def url(rt: Any, path: str) -> str:
    return rt.graph.url(f"communications/callRecords/{path}")


async def test_over_90_days_is_a_400_with_graphs_error_shape(fresh_sim: Any, runtime: Any) -> None:
    for function in ("getPstnCalls", "getDirectRoutingCalls"):
        with pytest.raises(GraphError) as caught:
            await first_page(
                runtime.graph,
                url(runtime, f"{function}(fromDateTime=2026-01-01,toDateTime=2026-04-02)"),
            )
        assert caught.value.status == 400 and caught.value.code == "BadRequest"
        assert "90 days" in caught.value.message
        # Exactly 90 days is allowed.
        page = await first_page(
            runtime.graph,
            url(runtime, f"{function}(fromDateTime=2026-01-01,toDateTime=2026-04-01)"),
        )
        assert page.value == [] and page.next_link is None
    for bad in (
        "getPstnCalls(fromDateTime=yesterday,toDateTime=2026-01-02)",
        "getPstnCalls(toDateTime=2026-01-02)",
        "getPstnCalls(fromDateTime=2026-01-03,toDateTime=2026-01-02)",
        "getPstnCalls(fromDateTime=2026-01-01T00:00:00,toDateTime=2026-01-02)",  # no offset
    ):
        with pytest.raises(GraphError) as caught:
            await first_page(runtime.graph, url(runtime, bad))
        assert caught.value.status == 400, bad


async def test_inclusive_and_exclusive_ends_as_documented(fresh_sim: Any, runtime: Any) -> None:
    sim = fresh_sim.client
    edge = START + timedelta(days=1)
    for kind in ("pstn", "directrouting"):
        sim.add_usage_row_objects(
            kind,
            [
                {"id": f"{kind}-at-start", "startDateTime": "2026-09-01T00:00:00Z"},
                {"id": f"{kind}-at-end", "startDateTime": "2026-09-02T00:00:00Z"},
            ],
        )
    pstn = await first_page(
        runtime.graph, url(runtime, function_path("getPstnCalls", START, edge).split("/")[-1])
    )
    dr = await first_page(
        runtime.graph,
        url(runtime, function_path("getDirectRoutingCalls", START, edge).split("/")[-1]),
    )
    ids = [row_id(r) for r in pstn.value]
    assert ids == ["pstn-at-start", "pstn-at-end"]  # toDateTime inclusive (getPstnCalls)
    assert [row_id(r) for r in dr.value] == ["directrouting-at-start"]  # exclusive
    # The documented example's bare dates and an offset form are accepted.
    offset = await first_page(
        runtime.graph,
        url(
            runtime,
            "getDirectRoutingCalls(fromDateTime=2026-09-01T02:00:00%2B02:00,toDateTime=2026-09-02)",
        ),
    )
    assert [row_id(r) for r in offset.value] == ["directrouting-at-start"]


def row_id(raw: Any) -> str:
    import orjson

    return str(orjson.loads(bytes(raw))["id"])


async def test_paging_with_the_documented_next_links(fresh_sim: Any, runtime: Any) -> None:
    sim = fresh_sim.client
    sim.add_usage_rows("pstn", 2345, START, START + timedelta(days=5))
    sim.add_usage_rows("directrouting", 1001, START, START + timedelta(days=5))
    for kind, function, link_form in (
        (UsageKind.PSTN, "getPstnCalls", "getPstnCalls(from=2026-09-01,to=2026-09-06)?$skip="),
        (
            UsageKind.DIRECT_ROUTING,
            "getDirectRoutingCalls",
            "getDirectRoutingCalls(fromDateTime=2026-09-01,toDateTime=2026-09-06)?$skip=",
        ),
    ):
        link: str | None = url(
            runtime, f"{function}(fromDateTime=2026-09-01,toDateTime=2026-09-06)"
        )
        sizes, seen = [], []
        while link:
            page = await first_page(runtime.graph, link)
            sizes.append(len(page.value))
            seen += [row_id(r) for r in page.value]
            link = page.next_link
            assert link is None or link_form in link
        expected = [r["id"] for r in sim.usage_rows(kind.value)]
        assert seen == expected and len(set(seen)) == len(seen)
        assert max(sizes) == 1000 and sizes[-1] == len(expected) % 1000


async def test_masked_numbers_and_correlation_ids(fresh_sim: Any, runtime: Any) -> None:
    rid = "c98e1515-a937-4b81-b8a8-3992afde64e0"
    fresh_sim.client.add_usage_rows(
        "directrouting", 1, START, START + timedelta(hours=1), correlation_ids=[rid]
    )
    (row,) = fresh_sim.client.usage_rows("directrouting")
    assert row["correlationId"] == rid
    assert row["callerNumber"].endswith("***") and row["calleeNumber"].endswith("***")
    assert row["callerNumber"].startswith("+")


async def test_per_log_throttle(fresh_sim: Any, runtime: Any) -> None:
    """50 requests / 60 s per log (collection): the 4th request here is a 429 with a
    Retry-After the client will not wait in place; the other log is not affected."""
    fresh_sim.client.set_faults(throttle=True, usage_collection_limit=3)
    path = "getPstnCalls(fromDateTime=2026-09-01,toDateTime=2026-09-02)"
    for _ in range(3):
        await first_page(runtime.graph, url(runtime, path))
    with pytest.raises(Throttled) as caught:
        await first_page(runtime.graph, url(runtime, path))
    assert caught.value.status == 429 and (caught.value.retry_after or 0) > 5
    await first_page(
        runtime.graph,
        url(runtime, "getDirectRoutingCalls(fromDateTime=2026-09-01,toDateTime=2026-09-02)"),
    )
    assert fresh_sim.client.stats()["faults"]["throttle_usage_collection"] == 1
