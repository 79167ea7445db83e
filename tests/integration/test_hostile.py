"""Hostile input through the real development host and Azurite: the worst 1 MiB bodies, a
declared length over the limit, lifecycle floods of foreign subscription ids, repeated genuine
lifecycle batches, and queue messages that lie. Each asserts the work it caused (messages
queued, counted) and that the genuine data in the same request still arrives. Memory per body
is asserted in-process (tests/unit/test_hostile.py); CPU is measured by `make bench`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devtools.graphsim.notifier import lifecycle_notification
from devtools.hostile import bodies
from devtools.stack import disabled
from shared import archiver, poison
from shared.messages import ControlAction, ControlItem, WorkItem, parse_message
from shared.notifications import MAX_BODY_BYTES
from shared.subscriptions import STATE_BLOB
from tests.integration.conftest import Host
from tests.integration.helpers import batch, notification, queue_depth, queued_ids

JSON = {"Content-Type": "application/json"}
OURS = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
PREVIOUS = "0b3c1a30-0b7e-4c41-8b57-4a8c1e2e9d11"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def webhook_only(stack, app_env, tmp_path) -> Iterator[Host]:
    """The app with the archiver off, so what the webhooks queue stays there to be counted."""
    stack.create_queue(app_env["CALLRECORDS_QUEUE"], poison=True)
    h = Host({**app_env, **disabled("archive_call_record")}, tmp_path / "host.log")
    yield h
    h.stop()


def test_the_worst_bodies_queue_only_the_genuine_record(webhook_only, app_env) -> None:
    state = app_env["GRAPH_CLIENT_STATE"]
    cases = bodies(state)
    failures = []
    with httpx.Client(base_url=f"{webhook_only.url}/api", timeout=60) as client:
        for case in cases:
            r = client.post("/notifications", content=case.body, headers=JSON)
            if r.status_code != case.status:
                failures.append(f"{case.name}: {r.status_code} {r.text[:120]}")
            elif case.status == 202 and r.json()["queued"] != 1:
                failures.append(f"{case.name}: {r.json()}")
    assert failures == []
    genuine = [c.genuine for c in cases if c.genuine]
    assert genuine and len(set(genuine)) == 1  # one record, in each body that is a batch
    queued = queued_ids(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"])
    assert queued == genuine  # each of those bodies queued it, and nothing else
    assert "Traceback" not in webhook_only.log() and state not in webhook_only.log()


def test_a_declared_length_over_the_limit_is_refused_by_the_app(stack, app_env, tmp_path) -> None:
    """Under a host that would take more (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT raised), the app
    still refuses a body over 1 MiB, with its own JSON 413, and queues nothing."""
    stack.create_queue(app_env["CALLRECORDS_QUEUE"], poison=True)
    env = {
        **app_env,
        **disabled("archive_call_record"),
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(4 * MAX_BODY_BYTES),
    }
    h = Host(env, tmp_path / "host.log")
    try:
        rid = str(uuid.uuid4())
        genuine = notification(rid, app_env["GRAPH_CLIENT_STATE"])
        big = orjson.dumps({"x": "a" * (2 * MAX_BODY_BYTES), "value": [genuine]})
        r = httpx.post(f"{h.url}/api/notifications", content=big, headers=JSON, timeout=60)
        assert r.status_code == 413 and "error" in r.json()
        assert queue_depth(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]) == 0
        # The same record in a batch of a proper size is queued.
        r = httpx.post(f"{h.url}/api/notifications", content=batch(genuine), headers=JSON)
        assert r.status_code == 202
        assert queued_ids(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]) == [rid]
    finally:
        h.stop()


def _remember_subscription(app_env: dict[str, str]) -> None:
    """What the keeper remembers once it has replaced PREVIOUS by OURS."""
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(f"{app_env['CALLRECORDS_QUEUE'][:57]}-state")
    try:
        container.create_container()
    except ResourceExistsError:
        pass
    known = {"subscriptionId": OURS, "previousSubscriptionId": PREVIOUS}
    container.upload_blob(STATE_BLOB, json.dumps(known), overwrite=True)


def _controls(app_env: dict[str, str]) -> list[ControlAction]:
    q = QueueClient.from_connection_string(
        app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    )
    items = [parse_message(base64.b64decode(m.content)) for m in q.peek_messages(max_messages=32)]
    assert all(isinstance(i, ControlItem) for i in items)
    return sorted(i.action for i in items if isinstance(i, ControlItem))


def test_lifecycle_floods_queue_nothing_and_a_genuine_batch_one_of_each(
    webhook_only, app_env
) -> None:
    state = app_env["GRAPH_CLIENT_STATE"]
    _remember_subscription(app_env)
    url = f"{webhook_only.url}/api/lifecycle"
    events = ["missed", "subscriptionRemoved", "reauthorizationRequired"]

    flood = [lifecycle_notification(str(uuid.uuid4()), events[i % 3], state) for i in range(1000)]
    r = httpx.post(url, content=batch(*flood), headers=JSON, timeout=60)
    assert r.status_code == 202
    assert r.json() == {"queued": 0, "dropped": 1000, "foreign": 1000, "debounced": 0}
    assert queue_depth(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]) == 0

    # Genuine events (50 "missed" for ours, the replaced one removed) among foreign ones.
    genuine = [
        *[lifecycle_notification(OURS, "missed", state) for _ in range(50)],
        *[lifecycle_notification(str(uuid.uuid4()), "missed", state) for _ in range(50)],
        lifecycle_notification(PREVIOUS, "subscriptionRemoved", state),
    ]
    r = httpx.post(url, content=batch(*genuine), headers=JSON)
    assert r.status_code == 202
    assert r.json() == {"queued": 2, "dropped": 50, "foreign": 50, "debounced": 0}
    assert _controls(app_env) == sorted([ControlAction.RECONCILE, ControlAction.RECREATE])

    # The same again within the debounce: nothing more to reconcile; a reauthorization
    # (one PATCH, nothing reconciled) still goes through.
    again = [*genuine, lifecycle_notification(OURS, "reauthorizationRequired", state)]
    r = httpx.post(url, content=batch(*again), headers=JSON)
    assert r.json() == {"queued": 1, "dropped": 50, "foreign": 50, "debounced": 2}
    assert _controls(app_env) == sorted(
        [ControlAction.RECONCILE, ControlAction.RECREATE, ControlAction.REAUTHORIZE]
    )
    log = webhook_only.log()
    assert "Traceback" not in log and state not in log
    assert "lifecycle notification batch: queued 0, dropped 1000" in log


async def test_a_message_first_seen_in_9999_still_gives_up(make_runtime) -> None:
    """Counted from now instead, it reaches the give-up time like any other; before, it was
    retried for ever. The parked reason reaches the operator's terminal escaped."""
    rt = make_runtime(ARCHIVE_GIVE_UP_HOURS="0.0001")  # 0.36 s, a day scaled down
    await rt.work.ensure()
    rid = str(uuid.uuid4())
    body = {"id": rid, "firstSeen": "9999-12-31T23:59:59+00:00", "lastError": "\x1b[2Jwiped"}
    item = WorkItem.from_body(json.dumps(body))
    await asyncio.sleep(0.5)  # past the scaled-down give-up time
    await archiver.retry_later(rt, item, RuntimeError("storage \x1b]0;owned\x07down"))
    assert [m async for m in rt.work.queue.receive_messages()] == []  # not retried again
    raw = rt.raw_poison()
    try:
        parked = [poison.parked(m) async for m in raw.receive_messages()]
    finally:
        await raw.close()
    assert [p.label for p in parked] == [rid]
    assert parked[0].reason.startswith("gave up after 0.0001 h")
    assert parked[0].last_error is not None and "\x1b]0;owned" in parked[0].last_error


def test_replay_poison_prints_message_text_escaped(app_env) -> None:
    """A parked message whose reason and last error carry terminal escapes is listed by
    `cli.py replay-poison --dry-run` with them shown, not obeyed."""
    conn, queue = app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    q = QueueClient.from_connection_string(conn, f"{queue}-poison")
    try:
        q.create_queue()
    except ResourceExistsError:
        pass
    rid = str(uuid.uuid4())
    hostile = {
        "id": rid,
        "firstSeen": "9999-12-31T23:59:59+00:00",
        "reason": "\x1b[2J\x1b[Hall clear\r\n",
        "lastError": "\u202eevil\x07",
    }
    q.send_message(base64.b64encode(json.dumps(hostile).encode()).decode())
    env = {**app_env, "NOTIFICATION_URL": "http://127.0.0.1:9/api/notifications"}
    out = subprocess.run(
        [sys.executable, "cli.py", "replay-poison", "--dry-run"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout and "\x07" not in out.stdout
    assert "reason: \\x1b[2J\\x1b[Hall clear\\r\\n" in out.stdout
    assert "last error: \\u202eevil\\x07" in out.stdout
    assert rid in out.stdout


async def test_of_many_instances_claiming_a_reconcile_at_once_one_wins(runtime) -> None:
    """The debounce is an ETag-guarded blob: 8 concurrent claims (8 instances answering 8
    batches) queue one reconciliation; after the debounce time another may be queued."""
    from shared.lifecycle import DEBOUNCE, claim

    now = datetime.now(UTC)
    won = await asyncio.gather(
        *(claim(runtime.state, ControlAction.RECONCILE, now) for _ in range(8))
    )
    assert sorted(won) == [False] * 7 + [True]
    assert not await claim(runtime.state, ControlAction.RECONCILE, now + DEBOUNCE / 2)
    assert await claim(runtime.state, ControlAction.RECREATE, now)  # each action its own
    assert await claim(runtime.state, ControlAction.RECONCILE, now + DEBOUNCE)
