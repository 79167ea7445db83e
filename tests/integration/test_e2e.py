"""End to end: Graph simulator -> webhook -> queue -> archiver -> Azurite, through devtools.host."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.helpers import batch, blobs, notification, queue_depth, wait_for

pytestmark = pytest.mark.e2e


def _post(host, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{host.url}/api/notifications", content=body, headers={"Content-Type": "application/json"}
    )


def test_big_record_archived_complete_once_then_new_version(host, sim, app_env) -> None:
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    tokens_before = sim.client.stats()["token_requests"]
    rec = sim.client.create_record(sessions=150, participants=300, notify=False)
    rid = rec["id"]
    expected = sim.client.expected(rid)
    assert len(expected["sessions"]) == 150 and len(expected["participants_v2"]) == 300

    note = notification(rid, app_env["GRAPH_CLIENT_STATE"])
    first = _post(host, batch(note, note))  # Graph may repeat an item in one batch
    assert first.status_code == 202, first.text
    assert first.json() == {"queued": 1, "dropped": 0, "duplicates": 1}
    assert _post(host, batch(note)).status_code == 202  # and deliver the batch again

    archived = wait_for(lambda: blobs(conn, container), what="the archived blob")
    wait_for(lambda: queue_depth(conn, app_env["CALLRECORDS_QUEUE"]) == 0, what="queue drained")
    archived = blobs(conn, container)
    assert list(archived) == [f"{expected['startDateTime'][:10].replace('-', '/')}/{rid}/v1.json"]
    assert archived.popitem()[1] == expected  # every session page, every participant page

    # The token came from the simulator's managed-identity endpoint, once for the whole process.
    assert sim.client.stats()["token_requests"] == tokens_before + 1
    assert "Bearer" not in host.log() and app_env["GRAPH_CLIENT_STATE"] not in host.log()

    v2 = sim.client.new_version(rid, notify=False)
    assert v2["version"] == 2
    expected2 = sim.client.expected(rid)
    assert _post(host, batch(note)).status_code == 202
    wait_for(lambda: len(blobs(conn, container)) == 2, what="the second version's blob")
    names = sorted(blobs(conn, container))
    assert [n.rsplit("/", 1)[1] for n in names] == ["v1.json", "v2.json"]
    assert blobs(conn, container)[names[1]] == expected2
    # Each version was one successful invocation (plus the repeat): nothing failed and retried.
    assert host.invocations("archive_call_record").get("failed", 0) == 0


def test_many_records_in_one_batch_all_arrive(host, sim, app_env) -> None:
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    ids = [
        sim.client.create_record(sessions=61, participants=131, notify=False)["id"]
        for _ in range(12)
    ]
    state = app_env["GRAPH_CLIENT_STATE"]
    response = _post(host, batch(*(notification(i, state) for i in ids)))
    assert response.status_code == 202 and response.json()["queued"] == 12
    wait_for(lambda: len(blobs(conn, container)) == 12, timeout=60, what="12 blobs")
    archived = {doc["id"]: doc for doc in blobs(conn, container).values()}
    for rid in ids:
        assert archived[rid] == sim.client.expected(rid)


def test_unknown_record_is_retried_not_lost_or_half_written(host, sim, app_env) -> None:
    """A record that 404s for its first fetches still arrives, complete, once."""
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    rid = sim.client.create_record(
        sessions=3, participants=2, available_after_fetches=1, notify=False
    )["id"]
    assert _post(host, batch(notification(rid, app_env["GRAPH_CLIENT_STATE"]))).status_code == 202
    wait_for(lambda: blobs(conn, container), timeout=60, what="the record after its 404")
    assert list(blobs(conn, container).values()) == [sim.client.expected(rid)]
