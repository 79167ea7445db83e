"""Late PSTN rows against the in-memory ports. The usage reports built from these logs
"usually reflect a 24 to 48 hour latency", so every hourly run re-reads at least 3 days before
its watermark, and once every USAGE_LOGS_REREAD_EVERY_HOURS (timed by the state store, not the
clock's hour) a deep run re-reads USAGE_LOGS_REREAD_DAYS. A day passing is played by moving
the stored time of the last deep re-read back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import unquote

import httpx
import pytest

from shared import permission
from shared.clock import parse_graph_datetime, utcnow
from shared.graph import Unauthorized
from shared.graph.retry import RetryPolicy
from shared.status import collect
from shared.usage import reread
from shared.usage.kinds import UsageKind
from shared.usage.sync import KindReport, sync_usage_logs
from shared.usage.watermark import Watermark, WatermarkStore
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts
from tests.functional.conftest import settings

PSTN = "getPstnCalls"
ENV = {"USAGE_LOGS_BACKFILL_DAYS": "10", "USAGE_LOGS_KINDS": "pstn"}


def _add(graph: FakeGraph, start: datetime, name: str) -> str:
    """A row Graph lists from now on (it may have started long ago: it appears late)."""
    row_id = f"{name}-{len(graph.usage_rows.get(PSTN, []))}"
    row = {"id": row_id, "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "callType": "x"}
    graph.usage_rows.setdefault(PSTN, []).append(row)
    return f"pstn/{start:%Y/%m/%d}/{row_id}.json"


async def _pstn(ports: FakePorts) -> KindReport:
    (report,) = await sync_usage_logs(ports)
    assert report.kind is UsageKind.PSTN and report.stopped is None, report.stopped
    return report


@pytest.fixture
def usage(ports: FakePorts) -> FakePorts:
    ports.settings = settings(**ENV)
    return ports


async def test_a_row_47_hours_late_is_archived_by_the_next_hourly_run(
    graph: FakeGraph, usage: FakePorts
) -> None:
    now = utcnow()
    early = [_add(graph, now - timedelta(hours=h), "on-time") for h in (30, 20, 2)]
    assert (await _pstn(usage)).written == 3
    late = _add(graph, now - timedelta(hours=47), "late")  # past the usual latency's end
    report = await _pstn(usage)
    assert report.written == 1 and report.archived == 3
    assert set(usage.archive.blobs) == {*early, late}
    assert usage.archive.document(late)["id"] == late.rsplit("/", 1)[1].removesuffix(".json")


async def test_3_days_every_run_7_days_once_a_day_by_the_state_stores_clock(
    graph: FakeGraph, usage: FakePorts
) -> None:
    now = utcnow()
    for day in range(9):
        _add(graph, now - timedelta(days=day, hours=3), "backfill")
    first = await _pstn(usage)  # the first run reads back 10 days: deep
    assert first.written == 9
    assert await reread.last_deep(usage.state, UsageKind.PSTN) is not None

    _add(graph, now - timedelta(hours=60), "60h-late")  # inside the 3 days every run reads
    five_days = _add(graph, now - timedelta(days=5), "5d-late")  # only a deep run reads it
    second = await _pstn(usage)
    assert second.watermark is not None
    assert second.since <= second.watermark - timedelta(days=3)
    assert second.since > utcnow() - timedelta(days=4)  # not deep: the last one is recent
    assert second.written == 1 and five_days not in usage.archive.blobs

    # A day later by the state store (whatever hour the timer runs at): the deep re-read.
    await reread.deep_done(usage.state, UsageKind.PSTN, utcnow() - timedelta(hours=24, minutes=1))
    third = await _pstn(usage)
    assert third.since <= utcnow() - timedelta(days=7)
    assert third.written == 1 and five_days in usage.archive.blobs
    assert len(usage.archive.blobs) == len(graph.usage_rows[PSTN]) == 11
    fourth = await _pstn(usage)  # the deep re-read is done for a day
    assert fourth.since > utcnow() - timedelta(days=4) and fourth.written == 0


async def test_reread_every_0_hours_makes_every_run_deep(
    graph: FakeGraph, usage: FakePorts
) -> None:
    usage.settings = settings(**ENV, USAGE_LOGS_REREAD_EVERY_HOURS="0", USAGE_LOGS_REREAD_DAYS="6")
    now = utcnow()
    for hours in (40, 20, 1):
        _add(graph, now - timedelta(hours=hours), "row")
    assert (await _pstn(usage)).written == 3
    late = _add(graph, now - timedelta(days=5), "5d-late")
    again = await _pstn(usage)
    assert again.since <= utcnow() - timedelta(days=6) and again.written == 1
    assert late in usage.archive.blobs


async def test_a_deep_reread_cut_short_is_not_counted_and_the_next_run_does_it(
    graph: FakeGraph,
) -> None:
    client = graph.client(retry=RetryPolicy("none"))  # a 429 reaches the sync and stops it
    ports = FakePorts(settings=settings(**ENV), graph=client)
    now = utcnow()
    _add(graph, now - timedelta(hours=5), "row")
    assert (await _pstn(ports)).written == 1
    day_ago = utcnow() - timedelta(hours=25)
    await reread.deep_done(ports.state, UsageKind.PSTN, day_ago)
    late = _add(graph, now - timedelta(days=6), "6d-late")
    graph.script = [(429, 30.0)]
    (cut,) = await sync_usage_logs(ports)
    assert cut.stopped and "throttled" in cut.stopped and late not in ports.archive.blobs
    assert await reread.last_deep(ports.state, UsageKind.PSTN) == day_ago
    deep = await _pstn(ports)
    assert deep.since <= utcnow() - timedelta(days=7) and late in ports.archive.blobs
    last = await reread.last_deep(ports.state, UsageKind.PSTN)
    assert last is not None and last > day_ago
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def test_a_403_on_the_usage_logs_is_named_in_health_and_the_rows_arrive_after(
    graph: FakeGraph, usage: FakePorts
) -> None:
    row = _add(graph, utcnow() - timedelta(hours=5), "row")
    graph.script = [(403, None)]
    with pytest.raises(Unauthorized):  # the timer fails loudly, the watermark stays
        await sync_usage_logs(usage)
    assert (await WatermarkStore(usage).load(UsageKind.PSTN)).until is None
    assert await permission.current_refusal(usage.state) is not None
    facts = await collect(usage, check_subscription=False)
    assert any(permission.REQUIRED_ROLE in p and "403" in p for p in facts.problems)
    assert (await _pstn(usage)).written == 1  # granted: the next run copies the rows
    assert list(usage.archive.blobs) == [row]


async def test_a_throttled_reread_still_brings_every_watermark_to_now(graph: FakeGraph) -> None:
    """The timer was off two days and the deep re-read is due; Graph throttles every read of
    the days before the watermarks. Each log's new ground is read first, so both watermarks
    reach now and the new rows arrive; the re-read, cut short, is due again, and the next run
    does it."""
    client = graph.client(retry=RetryPolicy("none"))  # a 429 reaches the sync and stops it
    ports = FakePorts(settings=settings(USAGE_LOGS_KINDS="pstn,directrouting"), graph=client)
    now = utcnow()
    off_since = now - timedelta(days=2)
    store = WatermarkStore(ports)
    due = now - timedelta(hours=25)
    for kind in UsageKind:
        await store.save(Watermark(kind, until=off_since))
        await reread.deep_done(ports.state, kind, due)
    new = [_add(graph, now - timedelta(hours=h), "new") for h in (40, 3)]
    late = _add(graph, now - timedelta(days=6), "late")
    dr_row = {"id": "dr-1", "startDateTime": f"{now - timedelta(hours=30):%Y-%m-%dT%H:%M:%SZ}"}
    graph.usage_rows["getDirectRoutingCalls"] = [dr_row]

    def throttle_the_old_days(request: httpx.Request) -> None:
        since = re.search(r"fromDateTime=([^,]+),", unquote(str(request.url)))
        if since and parse_graph_datetime(since.group(1)) < off_since:
            graph.script.insert(0, (429, 30.0))

    graph.before = throttle_the_old_days
    cut = await sync_usage_logs(ports)
    assert [r.kind for r in cut] == [UsageKind.PSTN, UsageKind.DIRECT_ROUTING]
    for report in cut:
        assert report.stopped and "throttled" in report.stopped, report.kind
        assert report.watermark is not None and report.watermark >= now, report.kind
        assert report.since <= off_since - timedelta(days=7)
        assert await reread.last_deep(ports.state, report.kind) == due
    assert {*new, f"directrouting/{now - timedelta(hours=30):%Y/%m/%d}/dr-1.json"} <= set(
        ports.archive.blobs
    )
    assert late not in ports.archive.blobs

    graph.before = None  # the throttle is over: the next run re-reads the week
    for report in await sync_usage_logs(ports):
        assert report.stopped is None, report.stopped
        last = await reread.last_deep(ports.state, report.kind)
        assert last is not None and last > due
    assert late in ports.archive.blobs
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]
