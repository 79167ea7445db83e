"""Long-running timers take their budget from host.json's functionTimeout: with the timeout
scaled down to 4 seconds and Graph answering slowly, the usage sync stops cleanly within it
(watermark saved after the last complete day) and the next run continues to the end."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import hostconfig
from shared.clock import utcnow
from shared.usage.kinds import UsageKind
from shared.usage.sync import sync_usage_logs
from shared.usage.watermark import WatermarkStore

pytestmark = pytest.mark.e2e


async def test_usage_sync_stops_within_the_function_timeout_and_continues(
    fresh_sim: Any, make_runtime: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, now = fresh_sim.client, utcnow()
    sim.add_usage_rows("pstn", 40, now - timedelta(days=10), now - timedelta(minutes=5))
    rt = make_runtime(USAGE_LOGS_BACKFILL_DAYS="10", USAGE_LOGS_KINDS="pstn")
    await rt.archive.container.create_container()
    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "00:00:04"}))
    monkeypatch.setattr(hostconfig, "HOST_JSON", tmp_path / "host.json")
    hostconfig.function_timeout.cache_clear()
    sim.set_faults(latency_ms=700)  # a slow Graph: one daily window a little under a second
    try:
        (cut,) = await sync_usage_logs(rt)
    finally:
        # Back to the real host.json before anything reads it again: function_timeout() is
        # cached per process, and other tests run in this one after this test.
        monkeypatch.undo()
        hostconfig.function_timeout.cache_clear()
        sim.set_faults(reset=True)
    assert cut.stopped and "time budget" in cut.stopped
    assert cut.done_until is not None and cut.done_until < now  # part of the range, cleanly
    mark = await WatermarkStore(rt).load(UsageKind.PSTN)
    assert mark.until is not None and mark.until == cut.done_until and cut.watermark == mark.until
    (rest,) = await sync_usage_logs(rt)
    assert rest.stopped is None
    archived = [b async for b in rt.archive.container.list_blobs(name_starts_with="pstn/")]
    assert len(archived) == 40
