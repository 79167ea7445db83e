"""The retry policy: 404 and long throttles go back on the queue with a delay, short faults are
absorbed in place, a partial record is never written, and what cannot succeed is parked in
poison with its reason. Every test checks that the record still arrives (or is in poison)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest
from azure.core.exceptions import HttpResponseError

from shared import archiver, handlers
from shared.messages import Source, WorkItem

ROOT = Path(__file__).resolve().parents[2]


async def _blobs(rt) -> dict[str, dict]:
    out = {}
    async for b in rt.archive.container.list_blobs():
        data = await (await rt.archive.container.download_blob(b.name)).readall()
        out[b.name] = orjson.loads(data)
    return out


async def _next_message(queue, wait: float = 15.0):
    """Receive the next message (waiting out its visibility delay); returns (message, body)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        async for m in queue.receive_messages(max_messages=1, visibility_timeout=60):
            await queue.delete_message(m)
            return m, m.content
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no message arrived")
        await asyncio.sleep(0.2)


async def _count(queue) -> int:
    return int((await queue.get_queue_properties()).approximate_message_count or 0)


def test_max_dequeue_count_matches_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert archiver.max_dequeue_count() == host["extensions"]["queues"]["maxDequeueCount"]


async def test_not_yet_available_goes_back_on_the_queue_then_arrives(runtime, sim) -> None:
    rid = sim.client.create_record(
        sessions=70, participants=5, available_after_fetches=2, notify=False
    )["id"]
    item = WorkItem.new(rid, Source.NOTIFICATION)
    await handlers.queue_message(item.to_json().encode(), dequeue_count=1)  # 404: requeued
    assert await _blobs(runtime) == {}
    first, body = await _next_message(runtime.work.queue)
    again = WorkItem.from_body(body)
    assert (again.id, again.attempt, again.first_seen) == (rid, 1, item.first_seen)
    assert "404" in (again.last_error or "")
    # A new message, not a redelivery: the host's dequeue count is not used up by a 404.
    assert first.dequeue_count == 1

    await handlers.queue_message(body, dequeue_count=1)  # 404 again: delay 2 s
    _, body = await _next_message(runtime.work.queue)
    assert WorkItem.from_body(body).attempt == 2
    await handlers.queue_message(body, dequeue_count=1)  # published now
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]


async def test_short_faults_are_absorbed_in_place(runtime, sim) -> None:
    rid = sim.client.create_record(sessions=130, participants=140, notify=False)["id"]
    sim.client.set_faults(retry_after=1, script=["429", "503", "drop_partial", "drop_silent"])
    try:
        before = dict(runtime.graph.retries)
        faults_before = sum(sim.client.stats()["faults"].values())
        await handlers.queue_message(
            WorkItem.new(rid, Source.CLI).to_json().encode(), dequeue_count=1
        )
        retried = runtime.graph.retries - Counter(before)
        # All four faults were served; 429, 503 and the truncated body were retried here (a
        # connection closed before any answer may be retried by the connection pool itself).
        assert sum(sim.client.stats()["faults"].values()) - faults_before == 4
        assert retried["429"] == 1 and retried["503"] == 1 and sum(retried.values()) >= 3
    finally:
        sim.client.set_faults(reset=True)
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]
    assert await _count(runtime.work.queue) == 0


async def test_long_throttle_goes_back_with_at_least_retry_after(runtime, sim) -> None:
    rid = sim.client.create_record(notify=False)["id"]
    sim.client.set_faults(retry_after=7, script=["429"])
    try:
        started = asyncio.get_running_loop().time()
        await handlers.queue_message(
            WorkItem.new(rid, Source.CLI).to_json().encode(), dequeue_count=1
        )
        assert await _count(runtime.work.queue) == 1
        _, body = await _next_message(runtime.work.queue, wait=20)
        assert asyncio.get_running_loop().time() - started >= 6.5  # invisible for Retry-After
    finally:
        sim.client.set_faults(reset=True)
    await handlers.queue_message(body, dequeue_count=1)
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]


async def test_connection_dropped_mid_pagination_never_writes_half(runtime, sim) -> None:
    rid = sim.client.create_record(sessions=200, participants=3, notify=False)["id"]
    body = WorkItem.new(rid, Source.NOTIFICATION).to_json().encode()
    sim.client.set_faults(
        script=["ok", "ok", "drop_partial", "drop_partial", "drop_partial", "drop_partial"]
    )
    try:
        await handlers.queue_message(body, dequeue_count=1)  # back on the queue, a bit later
    finally:
        sim.client.set_faults(reset=True)
    assert await _blobs(runtime) == {}  # nothing half-fetched was written
    _, again = await _next_message(runtime.work.queue)
    retried = WorkItem.from_body(again)
    assert retried.attempt == 1 and "Unreachable" in (retried.last_error or "")
    await handlers.queue_message(again, dequeue_count=1)
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]


async def test_unclassified_failure_uses_the_host_tries_then_parks(
    runtime, sim, app_env, make_runtime
) -> None:
    """What the policy cannot classify (here: the archive account refuses the app's key, a
    storage 403) raises for the host's retries, and on its last try is parked with the reason
    and the last error."""
    rid = sim.client.create_record(notify=False)["id"]
    item = WorkItem.new(rid, Source.NOTIFICATION)
    good = app_env["AzureWebJobsStorage"]
    key = good.split("AccountKey=")[1].split(";")[0]
    rt = make_runtime(ARCHIVE_STORAGE=good.replace(key, base64.b64encode(b"x" * 64).decode()))
    with pytest.raises(HttpResponseError) as raised:
        await archiver.archive_item(rt, item, dequeue_count=1)
    assert raised.value.status_code == 403
    await archiver.archive_item(rt, item, dequeue_count=archiver.max_dequeue_count())
    _, parked_body = await _next_message(runtime.work.poison)
    parked = WorkItem.from_body(parked_body)
    assert parked.reason == f"failed {archiver.max_dequeue_count()} times"
    assert "HttpResponseError" in (parked.last_error or "") or "403" in (parked.last_error or "")
    await archiver.archive_item(runtime, parked.replayed(), dequeue_count=1)
    assert list((await _blobs(runtime)).values()) == [sim.client.expected(rid)]


async def test_malformed_message_is_parked_not_retried(runtime) -> None:
    await handlers.queue_message(b'{"id": "../../x"}', dequeue_count=1)
    _, body = await _next_message(runtime.work.poison)
    parked = orjson.loads(base64.b64decode(body) if not body.startswith(b"{") else body)
    assert parked["body"] == '{"id": "../../x"}' and "GUID" in parked["reason"]
