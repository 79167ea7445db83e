"""Hostile and malformed input: every request gets a 4xx or its items are dropped, nothing that
is not genuine is queued, there is never a 500, and the secret never reaches the log."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError

from devtools.ports import closed_port
from devtools.stack import disabled
from shared.notifications import MAX_BODY_BYTES
from tests.integration.conftest import Host
from tests.integration.helpers import batch, blobs, notification, queue_depth, queued_ids, wait_for

RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def webhook_only(stack, app_env, tmp_path):
    """The app with the archiver switched off (AzureWebJobs.<name>.Disabled), so whatever
    the webhook queues stays in the queue to be counted. The queues exist, as Bicep makes them."""
    stack.create_queue(app_env["CALLRECORDS_QUEUE"], poison=True)
    h = Host({**app_env, **disabled("archive_call_record")}, tmp_path / "host.log")
    yield h
    h.stop()


def _body_cases(state: str) -> list[tuple[str, str, bytes, dict[str, str], int]]:
    """(case, method, body, headers, expected status) — expected 202 means 'all dropped'."""
    good = notification(RID, state)
    deep = b"[" * 100_000 + b"]" * 100_000

    def one(**changes: object) -> bytes:
        return batch({**good, **changes})

    return [
        ("GET", "GET", b"", {}, 405),
        ("PUT", "PUT", batch(good), JSON, 405),
        ("DELETE", "DELETE", b"", {}, 405),
        ("PATCH", "PATCH", batch(good), JSON, 405),
        ("empty body", "POST", b"", JSON, 400),
        ("truncated JSON", "POST", batch(good)[:-7], JSON, 400),
        ("null", "POST", b"null", JSON, 400),
        ("array", "POST", b"[]", JSON, 400),
        ("string", "POST", b'"value"', JSON, 400),
        ("value null", "POST", b'{"value": null}', JSON, 400),
        ("value object", "POST", b'{"value": {}}', JSON, 400),
        ("value string", "POST", b'{"value": "x"}', JSON, 400),
        ("no value", "POST", b'{"values": []}', JSON, 400),
        ("deeply nested", "POST", deep, JSON, 400),
        ("nested value", "POST", b'{"value": ' + deep + b"}", JSON, 400),
        ("invalid UTF-8", "POST", b'{"value": ["\xff\xfe"]}', JSON, 400),
        ("UTF-16", "POST", json.dumps({"value": [good]}).encode("utf-16"), JSON, 400),
        ("text/plain body", "POST", batch(good), {"Content-Type": "text/plain"}, 415),
        ("XML", "POST", b"<value/>", {"Content-Type": "application/xml"}, 415),
        ("form", "POST", b"value=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("huge body", "POST", b'{"value": [' + b'"' + b"x" * (5 * 1024 * 1024) + b'"]}', JSON, 413),
        ("too many items", "POST", batch(*[{"clientState": "x"}] * 1001), JSON, 413),
        ("forged clientState", "POST", one(clientState="forged"), JSON, 202),
        (
            "no clientState",
            "POST",
            batch({k: v for k, v in good.items() if k != "clientState"}),
            JSON,
            202,
        ),
        ("clientState number", "POST", one(clientState=12345), JSON, 202),
        ("clientState padded", "POST", one(clientState=f" {state} "), JSON, 202),
        ("clientState prefix", "POST", one(clientState=state[:-1]), JSON, 202),
        ("clientState NUL", "POST", one(clientState=state + "\x00"), JSON, 202),
        ("id with ../", "POST", one(resource=f"communications/callRecords/../../{RID}"), JSON, 202),
        (
            "id with %2F",
            "POST",
            one(resource=f"communications/callRecords/{RID[:8]}%2F{RID[9:]}"),
            JSON,
            202,
        ),
        (
            "id with query",
            "POST",
            one(resource=f"communications/callRecords/{RID}?$select=id"),
            JSON,
            202,
        ),
        (
            "id is a URL",
            "POST",
            one(resource=f"communications/callRecords/https://evil/{RID}"),
            JSON,
            202,
        ),
        ("id with newline", "POST", one(resource=f"communications/callRecords/{RID}\n"), JSON, 202),
        (
            "lookalike id",
            "POST",
            one(resource="communications/callRecords/е523d2ed-2966-4b6b-925b-754a88034cc5"),
            JSON,
            202,
        ),
        ("foreign resource", "POST", one(resource=f"users/{RID}"), JSON, 202),
        ("resource number", "POST", one(resource=7), JSON, 202),
        (
            "wrong odata type",
            "POST",
            one(resourceData={"@odata.type": "#microsoft.graph.user", "id": RID}),
            JSON,
            202,
        ),
        ("resourceData id differs", "POST", one(resourceData={"id": str(uuid.uuid4())}), JSON, 202),
        ("resourceData list", "POST", one(resourceData=[RID]), JSON, 202),
        ("changeType deleted", "POST", one(changeType="deleted"), JSON, 202),
        ("item string", "POST", b'{"value": ["' + RID.encode() + b'"]}', JSON, 202),
        ("item null", "POST", b'{"value": [null, 1, true]}', JSON, 202),
        (
            "lifecycle event",
            "POST",
            batch({"clientState": state, "lifecycleEvent": "missed"}),
            JSON,
            202,
        ),
        (
            "script in resource",
            "POST",
            one(resource="communications/callRecords/<script>alert(1)</script>"),
            JSON,
            202,
        ),
    ]


def test_bad_notifications_never_queue_and_never_500(webhook_only, app_env) -> None:
    state = app_env["GRAPH_CLIENT_STATE"]
    cases = _body_cases(state)
    assert len(cases) >= 40
    failures = []
    with httpx.Client(base_url=f"{webhook_only.url}/api", timeout=30) as client:
        for case, method, body, headers, expected in cases:
            r = client.request(method, "/notifications", content=body, headers=headers)
            ok = r.status_code == expected
            if expected == 202:
                ok = ok and r.json()["queued"] == 0
            elif expected == 413 and "request body size" in r.text:
                # Refused by the host itself (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT = 1 MiB) before
                # the function runs, as in Azure; the app refuses the same size on its own too.
                ok = ok and str(MAX_BODY_BYTES) in r.text
            elif expected != 405:
                ok = (
                    ok
                    and r.headers["content-type"].startswith("application/json")
                    and "error" in r.json()
                )
            if not ok:
                failures.append(f"{case}: {r.status_code} {r.text[:120]}")
    assert failures == []
    assert queue_depth(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]) == 0
    log = webhook_only.log()
    assert "Traceback" not in log
    assert state not in log
    assert "notification batch: queued 0, dropped 1 (clientState does not match: 1)" in log


@pytest.mark.parametrize(
    ("token", "status"),
    [
        ("Validation: Testing client application reachability for subscription Request-Id: 1", 200),
        ("<script>alert('x')</script>&<b>", 200),
        ("ünïcödé ✓ 𝔘", 200),
        ("a+b%2Fc d", 200),
        ("x" * 2000, 200),  # opaque: no 1,024-character limit
        ("Validation: " + "é+/=&" * 300, 200),  # 5.4 KiB once URL-encoded
        ("", 400),
        ("line\r\nSet-Cookie: a=b", 400),
    ],
)
def test_validation_handshake(webhook_only, token: str, status: int) -> None:
    r = httpx.post(
        f"{webhook_only.url}/api/notifications",
        params={"validationToken": token},
        content=b"{ not json at all",  # the body must not be looked at
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == status
    if status == 200:
        assert r.text == token
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in r.headers


def test_mixed_batch_queues_exactly_the_genuine_ids(webhook_only, app_env) -> None:
    state = app_env["GRAPH_CLIENT_STATE"]
    genuine = [str(uuid.uuid4()) for _ in range(3)]
    body = batch(
        notification(genuine[0], state),
        notification(str(uuid.uuid4()), "forged"),
        notification(genuine[1], state),
        notification("../../x", state),
        notification(genuine[2], state),
        notification(genuine[0], state),
    )
    r = httpx.post(f"{webhook_only.url}/api/notifications", content=body, headers=JSON)
    assert r.status_code == 202
    assert r.json() == {"queued": 3, "dropped": 2, "duplicates": 1}
    queued = queued_ids(app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"])
    assert sorted(queued) == sorted(genuine)
    # A replay of the same batch queues them again: dedup happens on (id, version) at write time.
    assert (
        httpx.post(f"{webhook_only.url}/api/notifications", content=body, headers=JSON).status_code
        == 202
    )


def test_queue_unreachable_means_503_and_graph_retries(app_env, tmp_path) -> None:
    """If the queue cannot take the ids, the answer is 5xx (never 202), and fast."""
    with closed_port() as dead:  # refuses at once, and nobody else can listen there
        conn = app_env["AzureWebJobsStorage"].replace(
            app_env["AzureWebJobsStorage"].split("QueueEndpoint=")[1].split(";")[0],
            f"http://127.0.0.1:{dead}/devstoreaccount1",
        )
        env = {**app_env, "AzureWebJobsStorage": conn, **disabled("archive_call_record")}
        h = Host(env, tmp_path / "host.log")
        try:
            body = batch(notification(RID, app_env["GRAPH_CLIENT_STATE"]))
            r = httpx.post(f"{h.url}/api/notifications", content=body, headers=JSON, timeout=30)
            assert r.status_code == 503
            assert r.elapsed.total_seconds() < 3.0  # Graph's budget for an answer
            assert "queue unavailable" in h.log()  # what the operator reads, and why
        finally:
            h.stop()


def test_malformed_queue_messages_go_to_poison_with_a_reason(host, app_env) -> None:
    from azure.storage.queue import QueueClient

    conn, queue = app_env["AzureWebJobsStorage"], app_env["CALLRECORDS_QUEUE"]
    q = QueueClient.from_connection_string(conn, queue)
    bad = [b"not json{", b'{"id": "../../etc/passwd"}', b"[]", b'{"id": 5}', b'{"no": "id"}']
    for body in bad:
        q.send_message(base64.b64encode(body).decode())
    poison = QueueClient.from_connection_string(conn, f"{queue}-poison")

    def parked() -> list[dict[str, str]]:
        try:
            msgs = poison.peek_messages(max_messages=32)
        except ResourceNotFoundError:  # the host creates it when its listener starts
            return []
        return (
            [orjson.loads(base64.b64decode(m.content)) for m in msgs]
            if len(msgs) == len(bad)
            else []
        )

    moved = wait_for(parked, what="malformed messages in poison")
    assert sorted(m["body"] for m in moved) == sorted(b.decode() for b in bad)
    assert all(m["reason"] for m in moved)
    assert queue_depth(conn, queue) == 0
    assert blobs(conn, app_env["ARCHIVE_CONTAINER"]) == {}
    # Each went straight to poison: one attempt, no crash loop through the host's retries.
    wait_for(
        lambda: host.metrics()["queue_messages"]["archive_call_record"]["received"] == len(bad),
        what="the host's count of messages handed to the function",
    )
    assert host.invocations("archive_call_record") == {"succeeded": len(bad)}
    assert host.metrics()["queue_messages"]["archive_call_record"] == {"received": len(bad)}
