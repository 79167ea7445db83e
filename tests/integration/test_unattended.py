"""Unattended for a year: outages outlived, parked messages kept forever, a webhook that
answers in time whatever storage does, and one log line per request.

Real time scales are scaled down through settings, keeping their shape: an outage lasts
longer than the host's five tries at its visibility timeout (in Azure 5 x 30 s = 2.5 min
against a 3-minute outage; here 5 x 2 s against 20 s), so the old "raise and let the host
retry" policy would have parked every record, and the new one must park none.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import azure.functions as func
import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devtools import azurite as azurite_mod
from devtools.ports import free_port
from shared import archiver, handlers, poison
from shared.clock import utcnow
from shared.messages import ControlItem, Source, WorkItem
from shared.workqueue import NEVER_EXPIRES
from tests.integration.conftest import Host, unique
from tests.integration.helpers import batch, blobs, notification, wait_for

OUTAGE_SECONDS = 20.0
HOST_RETRY_SECONDS = 2  # the host's visibilityTimeout, scaled down from host.json's 30 s
MAX_TRIES = 5  # host.json maxDequeueCount
SCALED = {
    "ARCHIVE_RETRY_BASE_SECONDS": "1",
    "ARCHIVE_RETRY_MAX_SECONDS": "3",
    "DEVHOST_VISIBILITY_TIMEOUT_SECONDS": str(HOST_RETRY_SECONDS),
}


def _request(body: bytes) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST",
        url="http://127.0.0.1/api/notifications",
        headers={"Content-Type": "application/json"},
        params={},
        body=body,
    )


def _archived_ids(conn: str, container: str) -> set[str]:
    return {name.split("/")[3] for name in blobs(conn, container)}


def _poison_depth(conn: str, queue: str) -> int:
    client = QueueClient.from_connection_string(conn, f"{queue}-poison")
    try:
        return len(client.peek_messages(max_messages=32))
    except Exception:
        return 0


def _requeues_per_record(log: str) -> Counter[str]:
    return Counter(
        line.split("record ", 1)[1].split(":", 1)[0]
        for line in log.splitlines()
        if "fetching again in" in line
    )


# ---- poison never expires


async def test_parked_messages_never_expire_and_host_copies_are_kept_forever(runtime) -> None:
    rid = "e523d2ed-2966-4b6b-925b-754a88034cc5"
    await runtime.work.put_poison(WorkItem.new(rid, Source.CLI), "test", "Graph 404")
    await runtime.work.put_raw_poison(b"not a work item", "message is neither JSON nor a GUID")
    # What the Functions host does after maxDequeueCount: a verbatim copy with the queue's
    # default time to live (7 days), which it offers no setting to change.
    host_copy = WorkItem.new("11111111-2222-3333-4444-555555555555", Source.NOTIFICATION)
    await runtime.work.poison.send_message(host_copy.to_json())
    raw = runtime.raw_poison()
    try:
        peeked = await raw.peek_messages(max_messages=32)
        assert len(peeked) == 3
        expiring = [m for m in peeked if poison.expires(m)]
        assert len(expiring) == 1  # only the host's copy expires
        assert expiring[0].expires_on - expiring[0].inserted_on == timedelta(days=7)
        assert all(m.expires_on.year == 9999 for m in peeked if not poison.expires(m))

        seen, resent = await poison.keep_forever(runtime.work, raw)
        assert (seen, resent) == (3, 1)
        after = await raw.peek_messages(max_messages=32)
        assert len(after) == 3 and not any(poison.expires(m) for m in after)
        bodies = sorted(base64.b64decode(m.content) for m in after)
        assert host_copy.to_json().encode() in bodies  # the same message, kept forever
        assert await poison.keep_forever(runtime.work, raw) == (3, 0)  # nothing left to do
    finally:
        await raw.close()
    assert NEVER_EXPIRES == -1


async def test_work_queue_messages_never_expire(runtime) -> None:
    """A week-long stop must not drop what waits in the work queue: the storage default
    (7 days) would, so records and slices are sent to live forever, like parked ones."""
    start = utcnow() - timedelta(hours=2)
    await runtime.work.put(
        [
            WorkItem.new("e523d2ed-2966-4b6b-925b-754a88034cc6", Source.NOTIFICATION),
            ControlItem.reconcile_slice(start, start + timedelta(hours=1)),
        ]
    )
    peeked = await runtime.work.queue.peek_messages(max_messages=32)
    assert len(peeked) == 2
    assert all(m.expires_on.year == 9999 for m in peeked)


async def test_transient_failures_for_longer_than_the_give_up_time_are_parked(runtime, sim) -> None:
    rid = sim.client.create_record(notify=False)["id"]
    old = WorkItem(rid, Source.NOTIFICATION, first_seen=utcnow() - timedelta(hours=25), attempt=40)
    sim.client.set_faults(outage=500)
    try:
        await handlers.queue_message(old.to_json().encode(), dequeue_count=1)
    finally:
        sim.client.set_faults(outage=0)
    assert int((await runtime.work.queue.get_queue_properties()).approximate_message_count) == 0
    parked = [m async for m in runtime.work.poison.receive_messages(max_messages=1)]
    assert len(parked) == 1 and parked[0].expires_on.year == 9999
    item = WorkItem.from_body(parked[0].content)
    assert item.reason and item.reason.startswith("gave up after 24 h of transient failures")
    assert "500" in (item.last_error or "")


async def test_token_endpoint_failure_is_outlived(runtime, sim, make_runtime, monkeypatch) -> None:
    """The managed identity endpoint down: requeued, not raised, then archived."""
    rid = sim.client.create_record(notify=False)["id"]
    item = WorkItem.new(rid, Source.NOTIFICATION)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{free_port()}/msi/token")
    rt = make_runtime()
    await archiver.archive_item(rt, item, dequeue_count=MAX_TRIES)  # even on the host's last try
    messages = []
    for _ in range(50):  # visible after the backoff (a second or so)
        messages = [m async for m in runtime.work.queue.receive_messages(max_messages=1)]
        if messages:
            break
        await asyncio.sleep(0.2)
    assert len(messages) == 1
    again = WorkItem.from_body(messages[0].content)
    assert again.attempt == 1 and again.first_seen == item.first_seen
    # azure-identity raises ServiceRequestError for an unreachable endpoint and
    # ClientAuthenticationError for one that answers with an error: both are outlived.
    assert any(e in (again.last_error or "") for e in ("ServiceRequest", "Authentication"))
    await runtime.work.queue.delete_message(messages[0])
    await archiver.archive_item(runtime, again, dequeue_count=1)  # the endpoint is back
    assert [b.name.split("/")[3] async for b in runtime.archive.container.list_blobs()] == [rid]


async def test_closing_one_queue_client_leaves_the_others_working(runtime) -> None:
    """Each queue client has its own retry policy: azure-core chains a pipeline's policies,
    so a shared one routed every client's requests through the newest client's transport."""
    raw = runtime.raw_poison()
    await raw.peek_messages(max_messages=1)
    await raw.close()
    await runtime.work.queue.send_message("still works")
    await runtime.work.poison.peek_messages(max_messages=1)


async def test_a_reconcile_slice_outlives_a_graph_outage(runtime, fresh_sim) -> None:
    rid = fresh_sim.client.create_record(sessions=1, notify=False)["id"]
    now = utcnow()
    item = ControlItem.reconcile_slice(now - timedelta(hours=6), now)
    fresh_sim.client.set_faults(outage=502)
    try:
        await handlers.queue_message(item.to_json().encode(), dequeue_count=MAX_TRIES)
    finally:
        fresh_sim.client.set_faults(outage=0)
    assert (await runtime.work.poison.get_queue_properties()).approximate_message_count == 0
    assert (await runtime.work.queue.get_queue_properties()).approximate_message_count == 1
    await runtime.work.queue.clear_messages()  # (it comes back after ARCHIVE_RETRY_MAX_SECONDS)
    await handlers.queue_message(item.to_json().encode(), dequeue_count=1)
    queued = [WorkItem.from_body(m.content) for m in await runtime.work.queue.peek_messages(32)]
    assert [q.id for q in queued] == [rid]


# ---- the webhook


async def test_a_junk_batch_of_1000_items_writes_one_log_line(runtime, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    body = orjson.dumps({"value": [1] * 1000})
    assert len(body) < 2100
    answer = await handlers.notifications(_request(body))
    assert answer.status_code == 202
    assert orjson.loads(answer.get_body()) == {"queued": 0, "dropped": 1000, "duplicates": 0}
    app_lines = [r for r in caplog.records if r.name.startswith("shared.")]
    assert len(app_lines) == 1, [r.getMessage() for r in app_lines]
    assert app_lines[0].getMessage() == (
        "notification batch: queued 0, dropped 1000 (not an object: 1000), duplicates 0"
    )
    assert not [r for r in caplog.records if r.name.startswith(("azure", "httpx"))]


async def test_black_holed_storage_gets_a_503_within_5_s(app_env, monkeypatch) -> None:
    """Connections that open and never answer: the enqueue deadline, not the SDK's timeouts
    and retries, decides when Graph hears back."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = app_env["AzureWebJobsStorage"]
    for service in ("BlobEndpoint", "QueueEndpoint"):
        old = conn.split(f"{service}=")[1].split(";")[0]
        conn = conn.replace(old, f"http://127.0.0.1:{port}/devstoreaccount1")
    monkeypatch.setenv("AzureWebJobsStorage", conn)
    from shared.runtime import reset_runtime

    await reset_runtime()
    state = app_env["GRAPH_CLIENT_STATE"]
    body = batch(notification("e523d2ed-2966-4b6b-925b-754a88034cc5", state))
    try:
        started = time.monotonic()
        answer = await handlers.notifications(_request(body))
        elapsed = time.monotonic() - started
    finally:
        await reset_runtime()
        for writer in held:
            writer.close()
        server.close()
    assert answer.status_code == 503 and answer.headers.get("Retry-After") == "30"
    assert elapsed < 5.0, f"answered after {elapsed:.1f} s"
    assert held, "the storage client never connected: the test did not test anything"


# ---- outages, end to end under the development host


def test_graph_500_outage_longer_than_the_host_tries_parks_nothing(app_env, sim, tmp_path) -> None:
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    BlobServiceClient.from_connection_string(conn).create_container(container)
    host = Host({**app_env, **SCALED}, tmp_path / "host.log")
    try:
        assert OUTAGE_SECONDS > MAX_TRIES * HOST_RETRY_SECONDS  # the shape of 3 min vs 2.5 min
        ids = [
            sim.client.create_record(sessions=s, participants=3, notify=False)["id"]
            for s in (1, 2, 61, 130)
        ]
        sim.client.set_faults(outage=500)
        state = app_env["GRAPH_CLIENT_STATE"]
        answer = httpx.post(
            f"{host.url}/api/notifications",
            content=batch(*(notification(r, state) for r in ids)),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 202
        time.sleep(OUTAGE_SECONDS)
        assert not _archived_ids(conn, container) & set(ids)
        sim.client.set_faults(outage=0)
        wait_for(
            lambda: set(ids) <= _archived_ids(conn, container),
            timeout=60,
            what="every record archived after the outage",
        )
        for rid in ids:
            assert blobs(conn, container)[
                next(n for n in blobs(conn, container) if rid in n)
            ] == sim.client.expected(rid)
        assert _poison_depth(conn, app_env["CALLRECORDS_QUEUE"]) == 0
        requeues = _requeues_per_record(host.log())
        # Every record came back more often than the host's tries would have allowed.
        assert all(requeues[rid] > MAX_TRIES for rid in ids), requeues
        assert "Graph 500" in host.log() and "moved to poison" not in host.log()
    finally:
        sim.client.set_faults(outage=0)
        host.stop()


@pytest.fixture
def own_azurite() -> Iterator[azurite_mod.Azurite]:
    """An Azurite of its own: pausing the session's would stall other tests' fixtures."""
    az = azurite_mod.start()
    yield az
    az.close()


def test_storage_paused_answers_503_in_time_and_loses_nothing(
    own_azurite, sim, tmp_path, app_env
) -> None:
    conn = own_azurite.connection_string
    env = {**app_env, **SCALED, "AzureWebJobsStorage": conn, "CALLRECORDS_QUEUE": unique("q")}
    container = env["ARCHIVE_CONTAINER"]
    BlobServiceClient.from_connection_string(conn).create_container(container)
    host = Host(env, tmp_path / "host.log")
    state = env["GRAPH_CLIENT_STATE"]
    url = f"{host.url}/api/notifications"
    first = [
        sim.client.create_record(
            sessions=s, participants=3, available_after_fetches=1, notify=False
        )["id"]
        for s in (1, 61, 130)
    ]
    later = [sim.client.create_record(sessions=2, notify=False)["id"] for _ in range(3)]
    try:
        with httpx.Client(timeout=30) as client:
            answer = client.post(url, content=batch(*(notification(r, state) for r in first)))
            assert answer.status_code == 202  # queued; each 404s once and is requeued
            own_azurite.pause()
            paused_at = time.monotonic()
            started = time.monotonic()
            answer = client.post(url, content=batch(*(notification(r, state) for r in later)))
            elapsed = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert elapsed < 5.0, f"answered after {elapsed:.1f} s with storage paused"
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - paused_at)))
            own_azurite.resume()
            # Graph delivers the refused batch again.
            deadline = time.monotonic() + 60
            while (
                client.post(
                    url, content=batch(*(notification(r, state) for r in later))
                ).status_code
                != 202
            ):
                assert time.monotonic() < deadline, "the webhook never recovered"
                time.sleep(1)
        wait_for(
            lambda: set(first + later) <= _archived_ids(conn, container),
            timeout=120,
            what="every record archived after the storage outage",
        )
        assert _poison_depth(conn, env["CALLRECORDS_QUEUE"]) == 0
        assert "moved to poison" not in host.log()
    finally:
        own_azurite.resume()
        host.stop()
