"""A Graph 403 lasting minutes (a fresh grant of CallRecords.Read.All not yet in the managed
identity's tokens) parks nothing, and every record arrives after it: through the development
host, the simulator and Azurite. The minutes are longer than the host's five tries at its
visibility timeout (5 x 2 s here against a 25-second refusal; 5 x 30 s in Azure against
hours), so parking on 403 or leaving it to the host would park records and slices."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import httpx
from azure.storage.queue import QueueClient

from shared.clock import utcnow
from shared.messages import Source, WorkItem
from tests.integration.conftest import Host
from tests.integration.helpers import blobs, queue_depth, wait_for

REFUSAL_SECONDS = 25.0
SCALED = {
    "ARCHIVE_RETRY_BASE_SECONDS": "1",
    "ARCHIVE_RETRY_MAX_SECONDS": "3",
    "DEVHOST_VISIBILITY_TIMEOUT_SECONDS": "2",
}


def test_a_403_lasting_minutes_parks_nothing_and_every_record_arrives(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    container, queue = app_env["ARCHIVE_CONTAINER"], app_env["CALLRECORDS_QUEUE"]
    stack.create_container(container)
    now = utcnow()
    records = [
        fresh_sim.client.create_record(
            sessions=1, start=now - timedelta(minutes=30 + i), notify=False
        )["id"]
        for i in range(6)
    ]
    host = Host({**app_env, **SCALED}, tmp_path / "host.log")
    try:
        fresh_sim.client.set_faults(forbidden=True)
        refused_at = time.monotonic()
        # Half arrive as notifications would (queued ids), the rest only reconciliation finds.
        work = QueueClient.from_connection_string(stack.conn, queue)
        for rid in records[:3]:
            body = WorkItem.new(rid, Source.NOTIFICATION).to_json().encode()
            work.send_message(base64.b64encode(body).decode())
        assert host.run_function("reconcile") == "succeeded"

        def named() -> str | None:
            problems = httpx.get(f"{host.url}/api/health", timeout=30).json()["problems"]
            return next((p for p in problems if "CallRecords.Read.All" in p), None)

        problem = wait_for(named, 30, "health naming the missing role")
        assert "403" in problem and "retried, not parked" in problem
        time.sleep(max(0.0, REFUSAL_SECONDS - (time.monotonic() - refused_at)))
        assert host.invocations("archive_call_record").get("succeeded", 0) >= 3  # tried, requeued
        assert queue_depth(stack.conn, f"{queue}-poison") == 0

        fresh_sim.client.set_faults(forbidden=False)  # the grant reached the tokens

        def all_archived() -> set[str] | None:
            ids = {name.split("/")[3] for name in blobs(stack.conn, container)}
            return ids if ids >= set(records) else None

        wait_for(all_archived, 90, "every record archived after the refusal")
        assert queue_depth(stack.conn, f"{queue}-poison") == 0
        poisoned = host.metrics()["queue_messages"].get("archive_call_record", {})
        assert poisoned.get("poisoned", 0) == 0
        wait_for(lambda: named() is None or None, 30, "the refusal cleared in health")
    finally:
        fresh_sim.client.set_faults(forbidden=False)
        host.stop()
