"""cli.py as an operator runs it: a subprocess, settings from the environment, talking to
Azurite and the Graph simulator (token from its managed-identity endpoint)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from azure.storage.queue import QueueClient

from shared.clock import utcnow
from shared.messages import Source, WorkItem
from tests.integration.helpers import blobs, wait_for

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("status", "subscription", "backfill", "enqueue", "fetch", "replay-poison")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python cli.py ARGS`` with the test's settings (app_env) plus ``env``."""
    child = {**os.environ, "NOTIFICATION_URL": "http://127.0.0.1:9/api/notifications", **env}
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """stderr of an expected failure: exactly one line, 'error: ...', no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def messages(conn: str, queue: str) -> list[dict]:
    """Every message in a queue, decoded, left in place (peek sees up to 32)."""
    peeked = QueueClient.from_connection_string(conn, queue).peek_messages(max_messages=32)
    return [orjson.loads(base64.b64decode(m.content)) for m in peeked]


def depth(conn: str, queue: str) -> int:
    client = QueueClient.from_connection_string(conn, queue)
    return int(client.get_queue_properties().approximate_message_count or 0)


def test_enqueue_fetch_and_replay_poison(runtime, sim, app_env) -> None:
    conn, queue = app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    poison = f"{queue}-poison"
    good = str(uuid.uuid4())

    bad = run_cli("enqueue", good, "not-a-guid", "{" + good + "}")
    assert bad.returncode == 2
    line = one_error_line(bad)
    assert "'not-a-guid'" in line and "'{" + good + "}'" in line and "nothing" in line
    assert depth(conn, queue) == 0  # the good one was not queued either

    other = str(uuid.uuid4()).upper()
    ok = run_cli("enqueue", good, other, good)
    assert ok.returncode == 0 and "queued 2" in ok.stdout, ok.stderr
    queued = messages(conn, queue)
    assert sorted(m["id"] for m in queued) == sorted([good, other.lower()])
    assert {m["source"] for m in queued} == {"cli"}

    rid = sim.client.create_record(sessions=61, participants=131, notify=False)["id"]
    fetched = run_cli("fetch", rid)
    assert fetched.returncode == 0, fetched.stderr
    ((name, doc),) = blobs(conn, app_env["ARCHIVE_CONTAINER"]).items()
    assert doc == sim.client.expected(rid)
    out = dict(line.split(None, 1) for line in fetched.stdout.strip().splitlines())
    assert out["blob"] == f"{name} (written)" and out["version"] == "1"
    assert out["pages"] == "4"  # record + 2nd sessions page + 2 participants pages
    assert int(out["bytes"]) > 10_000
    assert "already archived" in run_cli("fetch", rid).stdout
    missing = run_cli("fetch", str(uuid.uuid4()))
    assert missing.returncode == 1 and "not found in Graph" in one_error_line(missing)

    # Poison: parked by the archiver (reason, last error), by the host (verbatim), malformed.
    QueueClient.from_connection_string(conn, queue).clear_messages()
    parked, verbatim = str(uuid.uuid4()), str(uuid.uuid4())
    raw_poison = QueueClient.from_connection_string(conn, poison)
    item = WorkItem.new(parked, Source.NOTIFICATION).poisoned("not available after 240 min", "404")
    raw_poison.send_message(base64.b64encode(item.to_json().encode()).decode())
    host_copy = WorkItem.new(verbatim, Source.RECONCILE).retried("boom").to_json()
    raw_poison.send_message(base64.b64encode(host_copy.encode()).decode())
    raw_poison.send_message(
        base64.b64encode(b'{"reason": "message is not valid JSON", "body": "{oops"}').decode()
    )

    dry = run_cli("replay-poison", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{parked}  parked" in dry.stdout and "reason: not available after 240 min" in dry.stdout
    assert "last error: 404" in dry.stdout and "last error: boom" in dry.stdout
    assert f"{verbatim}  parked" in dry.stdout and "maxDequeueCount" in dry.stdout
    assert "(malformed)" in dry.stdout and "{oops" in dry.stdout
    assert "3 in" in dry.stdout and "nothing changed" in dry.stdout
    assert (depth(conn, poison), depth(conn, queue)) == (3, 0)

    replay = run_cli("replay-poison")
    assert replay.returncode == 0, replay.stderr
    assert "2 replayed" in replay.stdout and "1 malformed left" in replay.stdout
    back = messages(conn, queue)
    assert sorted(m["id"] for m in back) == sorted([parked, verbatim])
    assert all(m["source"] == "replay" and m["attempt"] == 0 for m in back)
    assert not any("reason" in m or "lastError" in m for m in back)
    assert depth(conn, poison) == 1  # the malformed one stays

    drop = run_cli("replay-poison", "--drop-malformed")
    assert drop.returncode == 0 and "1 malformed dropped" in drop.stdout
    assert depth(conn, poison) == 0


@pytest.mark.e2e
def test_subscription_and_status(host, fresh_sim, app_env) -> None:
    conn, queue = app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    url = host.env["NOTIFICATION_URL"]

    created = run_cli("subscription", "ensure", NOTIFICATION_URL=url)
    assert created.returncode == 0 and created.stdout.startswith("created "), created.stderr
    sid = created.stdout.split()[1].rstrip(",")
    kept = run_cli("subscription", "ensure", NOTIFICATION_URL=url)
    assert kept.stdout.startswith(f"kept {sid}, expires ")
    listed = run_cli("subscription", "list", "--all", NOTIFICATION_URL=url)
    assert listed.returncode == 0 and listed.stdout.startswith(sid), listed.stderr
    assert listed.stdout.rstrip().endswith("[this app]")
    renewed = run_cli("subscription", "renew", sid, NOTIFICATION_URL=url)
    assert renewed.returncode == 0 and renewed.stdout.startswith(f"renewed {sid}, expires ")

    rid = fresh_sim.client.create_record(sessions=1, notify=False)["id"]
    assert run_cli("enqueue", rid, NOTIFICATION_URL=url).returncode == 0
    # The host archives it; then the stack is healthy.
    wait_for(lambda: blobs(conn, app_env["ARCHIVE_CONTAINER"]), what="the enqueued record")
    wait_for(lambda: depth(conn, queue) == 0, what="the queue drained")
    healthy = run_cli("status", NOTIFICATION_URL=url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith(f"subscription     {sid}, expires ")
    assert "verdict          healthy" in healthy.stdout and rid in healthy.stdout

    QueueClient.from_connection_string(conn, f"{queue}-poison").send_message("bm90IGpzb24=")
    sick = run_cli("status", "--json", NOTIFICATION_URL=url)
    assert sick.returncode == 1
    facts = json.loads(sick.stdout)
    assert facts["verdict"] == "unhealthy" and facts["poison_depth"] == 1
    assert facts["subscription_id"] == sid and facts["archived_last_24h"] == 1

    deleted = run_cli("subscription", "delete", "--all", NOTIFICATION_URL=url)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {sid}"
    assert fresh_sim.client.subscriptions() == []
    again = run_cli("subscription", "delete", sid, NOTIFICATION_URL=url)
    assert again.returncode == 1 and "not found" in one_error_line(again)
    assert run_cli("subscription", "delete", NOTIFICATION_URL=url).returncode == 2


def test_backfill_clamps_queues_and_dry_runs(runtime, fresh_sim, app_env) -> None:
    conn, queue = app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    now = utcnow()
    ids = [
        fresh_sim.client.create_record(
            sessions=1, start=now - timedelta(days=d, hours=1), notify=False
        )["id"]
        for d in (0, 6, 13, 27)
    ]
    fresh_sim.client.create_record(sessions=1, start=now - timedelta(days=40), notify=False)

    dry = run_cli("backfill", "--since", "45d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 listed, 0 already archived, 4 not archived (dry run" in dry.stdout
    assert depth(conn, queue) == 0

    real = run_cli("backfill", "--since", "45d", "--until", "1d")
    assert real.returncode == 0, real.stderr
    assert "note: Graph keeps call records for 30 days" in real.stderr
    assert "\r" not in real.stderr and "done (100%)" in real.stderr  # not a terminal: lines
    assert "3 listed, 0 already archived, 3 queued" in real.stdout
    queued = messages(conn, queue)
    assert sorted(m["id"] for m in queued) == sorted(ids[1:])
    assert {m["source"] for m in queued} == {"backfill"}

    bad = run_cli("backfill", "--since", "last tuesday")
    assert bad.returncode == 2 and "neither a duration" in bad.stderr


def test_expected_errors_are_one_line(fresh_sim, app_env) -> None:
    # local.settings.json leaves GRAPH_CLIENT_STATE empty: the CLI names it.
    unset = run_cli("status", GRAPH_CLIENT_STATE="")
    assert unset.returncode == 1
    assert one_error_line(unset).startswith("error: GRAPH_CLIENT_STATE is not set")

    # What Graph answers an identity without the app role.
    fresh_sim.client.set_faults(script=["403", "403"])
    denied = run_cli("fetch", fresh_sim.client.create_record(sessions=1, notify=False)["id"])
    assert denied.returncode == 1
    line = one_error_line(denied)
    assert "Graph 403" in line and "CallRecords.Read.All application role" in line

    # A queue that does not exist yet (a fresh account) is created on first need.
    absent = "noqueue" + uuid.uuid4().hex[:8]
    no_queue = run_cli("enqueue", str(uuid.uuid4()), CALLRECORDS_QUEUE=absent)
    assert no_queue.returncode == 0 and f"queued 1 record id(s) on {absent}" in no_queue.stdout
