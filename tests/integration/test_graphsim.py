"""The Graph simulator over real loopback HTTP: it must behave like documented Graph, because
the archiver's tests only prove what the simulator is strict about."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devtools.graphsim.client import SimClient, SimError
from devtools.graphsim.process import SimulatorProcess, start_simulator
from devtools.graphsim.records import parse_time
from shared.graph import resolve_link

EXPAND = "$expand=sessions($expand=segments)"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    simulator = start_simulator(seed=7, validation_timeout=2.0)
    try:
        yield simulator
    finally:
        simulator.close()


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> SimClient:
    sim.client.reset()
    return sim.client


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def get_token(sim: SimulatorProcess, header: str | None = None, **params: str) -> httpx.Response:
    query = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com", **params}
    headers = {"X-IDENTITY-HEADER": sim.identity_header if header is None else header}
    return httpx.get(sim.identity_endpoint, params=query, headers=headers)


@pytest.fixture
def graph(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    token = get_token(sim).json()["access_token"]
    with httpx.Client(
        base_url=f"{sim.base_url}/v1.0", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


class Receiver:
    """A subscriber endpoint: answers the handshake per ``mode``, records notifications."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | wrong_body | html | status_500 | slow
        self.status = 202
        self.post_delay = 0.0  # seconds before answering a notification POST
        self.tokens: list[str] = []
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                if "validationToken" in query:
                    token = query["validationToken"][0]
                    with receiver.lock:
                        receiver.tokens.append(token)
                    mode = receiver.mode
                    if mode == "slow":
                        time.sleep(2.5)
                    if mode == "status_500":
                        self._answer(500, b"no", "text/plain")
                    elif mode == "wrong_body":
                        self._answer(200, b"not the token", "text/plain")
                    elif mode == "html":
                        self._answer(200, token.encode(), "text/html")
                    else:
                        self._answer(200, token.encode(), "text/plain; charset=utf-8")
                    return
                with receiver.lock:
                    receiver.posts.append(
                        {"path": parts.path, "query": parts.query, "body": json.loads(raw)}
                    )
                if receiver.post_delay:
                    time.sleep(receiver.post_delay)
                self._answer(receiver.status, b"", "text/plain")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/api/notifications", query: str = "code=abc%2B1") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}" + (
            f"?{query}" if query else ""
        )

    def notifications(self, path: str = "/api/notifications") -> list[dict[str, Any]]:
        with self.lock:
            return [n for p in self.posts if p["path"] == path for n in p["body"]["value"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def expiry(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def subscribe(graph: httpx.Client, receiver: Receiver, **overrides: Any) -> httpx.Response:
    body = {
        "changeType": "updated",
        "notificationUrl": receiver.url(),
        "lifecycleNotificationUrl": receiver.url("/api/lifecycle", ""),
        "resource": "communications/callRecords",
        "expirationDateTime": expiry(600),
        "clientState": "s3cret-state",
        **overrides,
    }
    return graph.post("/subscriptions", json=body)


def assert_graph_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code:
        assert error["code"] == code


def fetch_naively(
    graph: httpx.Client, record_id: str
) -> tuple[dict[str, Any], list[int], list[int]]:
    """What a simple archiver does: record + every sessions page + every participants page."""
    doc = graph.get(f"/communications/callRecords/{record_id}?{EXPAND}").raise_for_status().json()
    sessions, session_pages = list(doc["sessions"]), [len(doc["sessions"])]
    link = doc.pop("sessions@odata.nextLink", None)
    while link:
        assert link.startswith(str(graph.base_url))  # absolute, on the simulator's own root
        page = graph.get(resolve_link(link)).raise_for_status().json()
        sessions += page["value"]
        session_pages.append(len(page["value"]))
        link = page.get("@odata.nextLink")
    people: list[Any] = []
    participant_pages: list[int] = []
    link = f"{graph.base_url}communications/callRecords/{record_id}/participants_v2"
    while link:
        page = graph.get(resolve_link(link)).raise_for_status().json()
        people += page["value"]
        participant_pages.append(len(page["value"]))
        link = page.get("@odata.nextLink")
    doc["sessions"] = sessions
    doc["participants_v2"] = people
    return doc, session_pages, participant_pages


# ---------------------------------------------------------------- tokens and auth


def test_token_endpoint_speaks_the_app_service_protocol(sim: SimulatorProcess) -> None:
    assert get_token(sim, header="").status_code == 401
    assert get_token(sim, header="wrong").status_code == 401
    assert get_token(sim, **{"api-version": "2017-09-01"}).status_code == 400
    before = sim.client.stats()["token_requests"]
    response = get_token(sim, client_id="11111111-2222-3333-4444-555555555555")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "https://graph.microsoft.com"
    assert body["client_id"] == "11111111-2222-3333-4444-555555555555"
    assert isinstance(body["expires_on"], str)
    assert 3500 < int(body["expires_on"]) - time.time() <= 3600
    assert sim.client.stats()["token_requests"] == before + 1


def test_graph_routes_need_a_token_the_simulator_issued(
    sim: SimulatorProcess, clean: SimClient
) -> None:
    rid = clean.create_record(notify=False)["id"]
    url = f"{sim.base_url}/v1.0/communications/callRecords/{rid}"
    assert_graph_error(httpx.get(url), 401, "InvalidAuthenticationToken")
    for bad in ("Bearer nonsense", "Bearer sim.e30.AAAA", "Basic dXNlcjpwYXNz"):
        assert_graph_error(httpx.get(url, headers={"Authorization": bad}), 401)
    good = get_token(sim).json()["access_token"]
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    assert_graph_error(httpx.get(url, headers={"Authorization": f"Bearer {tampered}"}), 401)
    assert httpx.get(url, headers={"Authorization": f"Bearer {good}"}).status_code == 200


@pytest.fixture
def identity_env(sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The App Service managed-identity protocol pointed at the simulator, nothing else."""
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)


@pytest.mark.usefixtures("identity_env")
def test_real_managed_identity_credential_gets_a_working_token(
    sim: SimulatorProcess, clean: SimClient
) -> None:
    from azure.identity import ManagedIdentityCredential

    before = clean.stats()["token_requests"]
    credential = ManagedIdentityCredential(client_id="0a1b2c3d-0000-4000-8000-00000000beef")
    token = credential.get_token(f"{sim.base_url}/.default")
    assert token.expires_on > time.time() + 3000
    assert clean.stats()["token_requests"] == before + 1
    rid = clean.create_record(notify=False)["id"]
    response = httpx.get(
        f"{sim.base_url}/v1.0/communications/callRecords/{rid}",
        headers={"Authorization": f"Bearer {token.token}"},
    )
    assert response.status_code == 200
    assert response.json()["id"] == rid


@pytest.mark.usefixtures("identity_env")
async def test_async_credential_the_app_uses_works_too(
    sim: SimulatorProcess, clean: SimClient
) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    async with ManagedIdentityCredential() as credential:
        token = await credential.get_token(f"{sim.base_url}/.default")
    rid = clean.create_record(notify=False)["id"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token.token}"}) as http:
        response = await http.get(f"{sim.base_url}/v1.0/communications/callRecords/{rid}")
    assert response.status_code == 200


# ---------------------------------------------------------------- records and paging


def test_pages_are_60_sessions_and_130_participants_and_merge_to_expected(
    graph: httpx.Client, clean: SimClient
) -> None:
    rid = clean.create_record(sessions=150, participants=300, segments_per_session=3, notify=False)[
        "id"
    ]
    doc, session_pages, participant_pages = fetch_naively(graph, rid)
    assert session_pages == [60, 60, 30]
    assert participant_pages == [130, 130, 40]
    expected = clean.expected(rid)
    assert doc == expected
    assert len(expected["sessions"]) == 150 and len(expected["participants_v2"]) == 300
    assert not [k for k in expected if k.endswith("@odata.nextLink")]
    assert len({s["id"] for s in expected["sessions"]}) == 150
    assert len({p["id"] for p in expected["participants_v2"]}) == 300
    assert all(1 <= len(s["segments"]) <= 3 for s in expected["sessions"])
    assert expected["organizer_v2"] == expected["participants_v2"][0]
    # Seed keys that no schema lists survive (feedback tokens, network details).
    seg = expected["sessions"][0]["segments"][0]
    assert set(seg["media"][0]["callerNetwork"]) >= {"dnsSuffix", "receivedQualityEventRatio"}
    stats = clean.stats()
    assert stats["requests"]["sessions_page"] == 2
    assert stats["requests"]["participants_page"] == 3


def test_record_shapes_without_expand_and_with_participants_expand(
    graph: httpx.Client, clean: SimClient
) -> None:
    rid = clean.create_record(sessions=2, participants=140, notify=False)["id"]
    plain = graph.get(f"/communications/callRecords/{rid}").json()
    assert "sessions" not in plain and "participants_v2" not in plain
    assert plain["organizer_v2"]["id"] and plain["version"] == 1
    assert plain["@odata.context"].endswith("$metadata#communications/callRecords/$entity")
    expanded = graph.get(f"/communications/callRecords/{rid}?$expand=participants_v2").json()
    assert len(expanded["participants_v2"]) == 130
    rest = graph.get(resolve_link(expanded["participants_v2@odata.nextLink"])).json()
    assert len(rest["value"]) == 10 and "@odata.nextLink" not in rest
    small = graph.get(f"/communications/callRecords/{rid}?{EXPAND}").json()
    assert len(small["sessions"]) == 2 and "sessions@odata.nextLink" not in small


def test_next_links_cannot_be_forged_or_reused_across_records(
    graph: httpx.Client, clean: SimClient
) -> None:
    a = clean.create_record(sessions=61, notify=False, link_style="path")["id"]
    b = clean.create_record(sessions=61, notify=False, link_style="path")["id"]
    link = graph.get(f"/communications/callRecords/{a}?{EXPAND}").json()["sessions@odata.nextLink"]
    assert graph.get(link).status_code == 200
    head, token = link.split("$skiptoken=")
    payload, mac = token.split(".")
    forged = payload[:-2] + ("QQ" if not payload.endswith("QQ") else "Zw")
    assert_graph_error(graph.get(f"{head}$skiptoken={forged}.{mac}"), 400, "BadRequest")
    assert_graph_error(graph.get(f"{head}$skiptoken=abc"), 400)
    assert_graph_error(graph.get(link.replace(a, b)), 400)


def test_bad_queries_get_400_not_500(graph: httpx.Client, clean: SimClient) -> None:
    rid = clean.create_record(notify=False)["id"]
    assert_graph_error(graph.get(f"/communications/callRecords/{rid}?$expand=everything"), 400)
    assert_graph_error(graph.get(f"/communications/callRecords/{rid}?$top=1"), 400)
    assert_graph_error(graph.get("/communications/callRecordz"), 400)
    assert_graph_error(graph.delete(f"/communications/callRecords/{rid}"), 405)
    assert_graph_error(graph.post("/subscriptions", content=b"{not json"), 400)
    with pytest.raises(SimError) as info:
        clean.create_record(sessions=0)
    assert info.value.status == 400


def test_record_404s_for_its_first_fetches_then_appears(
    graph: httpx.Client, clean: SimClient
) -> None:
    rid = clean.create_record(available_after_fetches=2, notify=False)["id"]
    url = f"/communications/callRecords/{rid}?{EXPAND}"
    assert_graph_error(graph.get(url), 404)
    assert_graph_error(graph.get(f"/communications/callRecords/{rid}/participants_v2"), 404)
    assert_graph_error(graph.get(url), 404)
    assert graph.get(url).status_code == 200
    never = clean.create_record(never_available=True, notify=False)["id"]
    for _ in range(3):
        assert_graph_error(graph.get(f"/communications/callRecords/{never}"), 404)
    old = clean.create_record(start=datetime.now(UTC) - timedelta(days=31), notify=False)["id"]
    assert_graph_error(graph.get(f"/communications/callRecords/{old}"), 404)
    unknown = "6f1f2f3f-0000-4000-8000-000000000000"
    assert_graph_error(graph.get(f"/communications/callRecords/{unknown}"), 404)


def test_a_record_is_published_up_to_150_scaled_minutes_after_the_call_and_kept_30_days(
    graph: httpx.Client, clean: SimClient
) -> None:
    """A first version appears at most 150 minutes after the call ends, 404 until then
    (api/callrecords-callrecord-get, callrecords-api-faq); records are kept 30 days
    (api/resources/callrecords-api-overview). 150 minutes run here as 2 s."""
    clean.set_config(time_scale=2 / (150 * 60))
    rid = clean.create_record(available_after_minutes=150)["id"]  # its notification comes now
    url = f"/communications/callRecords/{rid}"
    assert_graph_error(graph.get(url), 404)
    # polled through the control API: Graph's 10 reads / 20 s for one record would trip
    wait_for(
        lambda: any(r["id"] == rid and r["available"] == "available" for r in clean.records()),
        timeout=10,
    )
    assert graph.get(url).json()["id"] == rid
    with pytest.raises(SimError, match="available_after_minutes"):
        clean.create_record(available_after_minutes=151, notify=False)  # beyond the documented
    kept = clean.create_record(start=datetime.now(UTC) - timedelta(days=29), notify=False)["id"]
    assert graph.get(f"/communications/callRecords/{kept}").status_code == 200


def test_late_usage_rows_appear_only_after_their_scaled_latency(
    graph: httpx.Client, clean: SimClient
) -> None:
    """No Graph page states when a PSTN or Direct Routing row appears; the Teams admin center's
    usage reports "usually reflect a 24 to 48 hour latency" (pstn-minute-pools-report), taken
    as the limit: 48 hours run here as 2 s, and more than 48 is refused."""
    clean.set_config(time_scale=2 / (48 * 3600))
    clean.set_faults(usage_collection_limit=100_000)  # the polling below: past 50 / 60 s a log
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    on_time = clean.add_usage_rows("pstn", 2, day, day + timedelta(hours=1))
    late = clean.add_usage_rows("pstn", 3, day, day + timedelta(hours=1), visible_after_hours=48)
    url = (
        "/communications/callRecords/getPstnCalls("
        f"fromDateTime={day.date().isoformat()},toDateTime={(day + timedelta(days=1)).date()})"
    )

    def ids() -> set[str]:
        response = graph.get(url)
        assert response.status_code == 200, response.text
        return {row["id"] for row in response.json()["value"]}

    assert ids() == set(on_time)
    wait_for(lambda: ids() == set(on_time) | set(late), timeout=10)
    with pytest.raises(SimError, match="visible_after_hours"):
        clean.add_usage_rows("pstn", 1, day, day + timedelta(hours=1), visible_after_hours=49)


def test_versions_change_the_document_and_are_deterministic(
    graph: httpx.Client, clean: SimClient
) -> None:
    rid = "0e6c1c52-4b1d-4c55-9c52-7c1f1c0b7a01"
    start = "2026-11-20T10:00:00Z"  # the same inputs give the same record
    clean.create_record(rid, sessions=4, participants=3, start=start, notify=False)
    v1 = clean.expected(rid)
    assert clean.new_version(rid, notify=False) == {"id": rid, "version": 2}
    v2 = graph.get(f"/communications/callRecords/{rid}?{EXPAND}").json()
    assert v2["version"] == 2
    assert v2["lastModifiedDateTime"] > v1["lastModifiedDateTime"]
    assert v2["sessions"][:4] == v1["sessions"]
    clean.reset()
    clean.create_record(rid, sessions=4, participants=3, start=start, notify=False)
    assert clean.expected(rid)["sessions"] == v1["sessions"]


def test_duplicate_session_ids_and_a_very_large_record(clean: SimClient) -> None:
    rid = clean.create_record(sessions=9, duplicate_session_ids=True, notify=False)["id"]
    ids = [s["id"] for s in clean.expected(rid)["sessions"]]
    assert len(ids) == 9 and len(set(ids)) == 6
    big = clean.create_record(sessions=10_000, participants=1_000, notify=False)["id"]
    doc = clean.expected(big)  # make bench measures how long this takes, not this test
    assert len(doc["sessions"]) == 10_000 and len(doc["participants_v2"]) == 1_000


# ---------------------------------------------------------------- list


def test_list_filters_by_start_window_and_pages_by_60(
    graph: httpx.Client, clean: SimClient
) -> None:
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    inside = set()
    for i in range(130):
        start = day + timedelta(minutes=5 * i + 1)
        inside.add(clean.create_record(start=start, sessions=1, notify=False)["id"])
    clean.create_record(start=day - timedelta(minutes=1), notify=False)
    clean.create_record(start=day + timedelta(days=1, minutes=1), notify=False)
    old = clean.create_record(start=datetime.now(UTC) - timedelta(days=40), notify=False)["id"]
    lo = day.strftime("%Y-%m-%dT%H:%M:%SZ")
    hi = (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ids, sizes = list_all(graph, f"startDateTime ge {lo} and startDateTime lt {hi}")
    assert sizes == [60, 60, 10]
    assert set(ids) == inside and len(ids) == 130
    # Quoted values and offsets: 01:00+01:00 is 00:00Z, so minutes 1 and 6 match.
    plus_one = (day + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
    ten = (day + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    ids, _ = list_all(graph, f"startDateTime ge '{plus_one}' and startDateTime lt '{ten}'")
    assert len(ids) == 2 and set(ids) <= inside
    ids, sizes = list_all(graph, "startDateTime gt 2000-01-01T00:00:00Z")
    assert len(ids) == 132 and old not in ids  # nothing older than 30 days
    bad_filters = (
        "endDateTime ge 2026-01-01T00:00:00Z",
        "startDateTime eq 2026-01-01T00:00:00Z",
        "startDateTime ge 2026-01-01",
        "startDateTime ge 2026-01-01T00:00:00",
        "startDateTime ge 2026-01-01T00:00:00Z or startDateTime lt 2026-01-02T00:00:00Z",
    )
    for bad in bad_filters:
        assert_graph_error(graph.get("/communications/callRecords", params={"$filter": bad}), 400)


def list_all(graph: httpx.Client, flt: str) -> tuple[list[str], list[int]]:
    page = graph.get("/communications/callRecords", params={"$filter": flt}).json()
    ids, sizes = [], []
    while True:
        sizes.append(len(page["value"]))
        assert all("sessions" not in r and "participants_v2" not in r for r in page["value"])
        ids += [r["id"] for r in page["value"]]
        if "@odata.nextLink" not in page:
            return ids, sizes
        assert page["@odata.nextLink"].startswith(str(graph.base_url))
        page = graph.get(page["@odata.nextLink"]).json()


# ---------------------------------------------------------------- subscriptions


def test_subscription_create_runs_the_handshake_and_applies_the_rules(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    response = subscribe(graph, receiver, expirationDateTime=expiry(10))
    assert response.status_code == 201, response.text
    sub = response.json()
    assert len(receiver.tokens) == 2  # notificationUrl and lifecycleNotificationUrl
    assert all(" " in t and "+" in t and "&" in t for t in receiver.tokens)
    assert clean.stats()["validations"]["ok"] == 2
    raised = parse_time(sub["expirationDateTime"])
    assert timedelta(minutes=44) < raised - datetime.now(UTC) <= timedelta(minutes=45)
    # Graph's answers do not show the secret back; the control API does.
    assert sub["clientState"] is None and sub["notificationUrl"] == receiver.url()
    assert [s["clientState"] for s in clean.subscriptions()] == ["s3cret-state"]

    assert_graph_error(subscribe(graph, receiver), 409)
    assert_graph_error(
        subscribe(
            graph, receiver, notificationUrl=receiver.url(query=""), expirationDateTime=expiry(4231)
        ),
        400,
    )
    assert_graph_error(subscribe(graph, receiver, clientState="x" * 129), 400)
    assert_graph_error(subscribe(graph, receiver, resource="me/messages"), 400)

    patched = graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(4000)})
    assert (
        patched.status_code == 200
        and patched.json()["expirationDateTime"] > sub["expirationDateTime"]
    )
    assert_graph_error(
        graph.patch(
            f"/subscriptions/{sub['id']}", json={"lifecycleNotificationUrl": receiver.url()}
        ),
        400,
    )
    assert graph.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert [s["id"] for s in graph.get("/subscriptions").json()["value"]] == [sub["id"]]
    assert graph.delete(f"/subscriptions/{sub['id']}").status_code == 204
    assert_graph_error(graph.get(f"/subscriptions/{sub['id']}"), 404)
    assert_graph_error(
        graph.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": expiry(100)}), 404
    )

    clean.set_config(subscription_quota=1)
    assert subscribe(graph, receiver).status_code == 201
    # Another URL for the same resource and changeType is a duplicate (409), whatever the quota.
    assert_graph_error(subscribe(graph, receiver, notificationUrl=receiver.url(query="x=2")), 409)
    filtered = "communications/callRecords?$filter=participants_v2/any(p:p/id eq 'u1')"
    assert_graph_error(subscribe(graph, receiver, resource=filtered), 403)


@pytest.mark.parametrize("mode", ["wrong_body", "html", "status_500", "slow"])
def test_failed_handshake_is_a_400_and_creates_nothing(
    graph: httpx.Client, receiver: Receiver, clean: SimClient, mode: str
) -> None:
    receiver.mode = mode
    response = subscribe(graph, receiver)
    assert_graph_error(response, 400)
    assert "validation" in response.json()["error"]["message"].lower()
    assert graph.get("/subscriptions").json()["value"] == []
    assert clean.stats()["validations"]["failed"] == 1


# ---------------------------------------------------------------- notifications


def test_notifications_reach_the_subscriber_with_the_documented_shape(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    clean.set_config(batch_window_ms=150)
    sub = subscribe(graph, receiver).json()
    rid = clean.create_record(available_after_fetches=1)["id"]  # notified before readable
    [note] = wait_for(receiver.notifications)
    assert note == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": note["subscriptionExpirationDateTime"],
        "changeType": "updated",
        "clientState": "s3cret-state",
        "resource": f"communications/callRecords/{rid}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.callRecord",
            "@odata.id": f"communications/callRecords/{rid}",
            "id": rid,
        },
        "tenantId": "dc368399-474c-4d40-900c-6265431fd81f",
    }
    assert datetime.fromisoformat(note["subscriptionExpirationDateTime"]) > datetime.now(UTC)
    assert receiver.posts[0]["query"] == "code=abc%2B1"  # the query string is kept verbatim
    assert_graph_error(graph.get(f"/communications/callRecords/{rid}"), 404)

    clean.new_version(rid)
    ids = [clean.create_record(notify=True)["id"] for _ in range(4)]
    wait_for(lambda: len(receiver.notifications()) == 6)
    assert len(receiver.posts) <= 3  # the 5 later ones were batched
    later = receiver.notifications()[1:]
    assert sorted(n["resourceData"]["id"] for n in later) == sorted([rid, *ids])

    clean.pause_notifications()
    clean.create_record()
    clean.resume_notifications()
    time.sleep(0.4)
    assert len(receiver.notifications()) == 6
    stats = clean.stats()["notifications"]
    assert stats["delivered"] == 6 and stats["dropped"] == 1


def test_created_and_updated_subscription_gets_both_for_a_new_record(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    clean.set_config(batch_window_ms=10)
    subscribe(graph, receiver, changeType="created,updated")
    rid = clean.create_record()["id"]
    wait_for(lambda: len(receiver.notifications()) == 2)
    clean.new_version(rid)
    wait_for(lambda: len(receiver.notifications()) == 3)
    kinds = sorted(n["changeType"] for n in receiver.notifications())
    assert kinds == ["created", "updated", "updated"]
    assert {n["resourceData"]["id"] for n in receiver.notifications()} == {rid}


def test_failed_deliveries_are_retried_with_backoff(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    clean.set_config(batch_window_ms=10, retry_base_seconds=0.1, max_attempts=5)
    subscribe(graph, receiver)
    receiver.status = 500
    clean.create_record()
    wait_for(lambda: clean.stats()["notifications"]["retried"] >= 2)
    receiver.status = 202
    wait_for(lambda: clean.stats()["notifications"]["delivered"] == 1)
    stats = clean.stats()["notifications"]
    assert stats["failed"] >= 2 and stats["discarded"] == 0
    assert len(receiver.notifications()) >= 3  # same notification, delivered again


def test_retries_are_spread_over_graphs_4_hours_scaled(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    """Graph retries a failed delivery with exponential back-off for up to 4 hours, not a fixed
    number of times (learn.microsoft.com/graph/change-notifications-delivery-webhooks)."""
    scale = 0.0005  # 4 hours -> 7.2 s
    clean.set_config(batch_window_ms=10, time_scale=scale, retry_base_seconds=0.25)
    subscribe(graph, receiver)
    receiver.status = 500
    clean.create_record()
    wait_for(lambda: clean.stats()["notifications"]["discarded"] == 1, timeout=20)
    tries = [e for e in clean.notification_log() if e["kind"] == "notification"]
    assert len(tries) >= 6 and {e["status"] for e in tries} == {500}
    assert tries[-1]["at"] - tries[0]["at"] >= 0.9 * 4 * 3600 * scale


def test_a_slow_endpoint_loses_new_notifications_then_recovers(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    """No answer within 3 s is a slow answer; over 15% slow answers in the (scaled) 10 minutes
    and new notifications are dropped, unrecoverably, for up to 10 (scaled) minutes."""
    clean.set_config(batch_window_ms=10, time_scale=0.005, max_attempts=1)  # 10 min -> 3 s
    subscribe(graph, receiver)
    receiver.post_delay = 3.3
    slow_id = clean.create_record()["id"]
    wait_for(lambda: clean.stats()["notifications"]["slow_answers"] == 1, timeout=10)
    receiver.post_delay = 0.0
    lost = clean.create_record()["id"]
    assert clean.stats()["notifications"]["dropped_slow"] == 1
    time.sleep(3.5)  # the slow answer leaves the scaled window: the endpoint recovers
    fine = clean.create_record()["id"]
    wait_for(lambda: fine in {n["resourceData"]["id"] for n in receiver.notifications()})
    seen = {n["resourceData"]["id"] for n in receiver.notifications()}
    assert lost not in seen and slow_id in seen  # the slow one was received, not acknowledged
    assert clean.stats()["notifications"]["discarded"] == 1


def test_callrecords_get_no_subscription_removed_or_missed(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    sub = subscribe(graph, receiver).json()
    for event in ("subscriptionRemoved", "missed"):
        with pytest.raises(SimError, match=f"does not send {event} for callRecords"):
            clean.lifecycle(sub["id"], event)
    clean.remove_subscription(sub["id"])  # what Graph does instead: it just stops
    assert_graph_error(graph.get(f"/subscriptions/{sub['id']}"), 404)
    assert receiver.notifications("/api/lifecycle") == []


def test_expired_subscriptions_vanish_and_get_nothing(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    clean.set_config(batch_window_ms=10)
    sub = subscribe(graph, receiver).json()
    clean.expire_subscription(sub["id"])
    assert_graph_error(graph.get(f"/subscriptions/{sub['id']}"), 404)
    assert clean.subscriptions() == []
    clean.create_record()
    time.sleep(0.3)
    assert receiver.notifications() == []


def test_lifecycle_events_are_posted_and_subscription_removed_deletes(
    graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    sub = subscribe(graph, receiver).json()
    result = clean.lifecycle(sub["id"], "reauthorizationRequired")
    assert result["delivered"] is True
    [event] = receiver.notifications("/api/lifecycle")
    assert event["lifecycleEvent"] == "reauthorizationRequired"
    assert event["subscriptionId"] == sub["id"] and event["clientState"] == "s3cret-state"
    with pytest.raises(SimError, match="does not send subscriptionRemoved for callRecords"):
        clean.lifecycle(sub["id"], "subscriptionRemoved")
    clean.set_config(undocumented_lifecycle_events=1)  # a client's defences, tested on purpose
    clean.lifecycle(sub["id"], "subscriptionRemoved")
    assert_graph_error(graph.get(f"/subscriptions/{sub['id']}"), 404)


# ---------------------------------------------------------------- faults and throttling


def test_faults_429_503_drop_and_latency_on_graph_routes_only(
    sim: SimulatorProcess, graph: httpx.Client, clean: SimClient
) -> None:
    rid = clean.create_record(notify=False)["id"]
    url = f"/communications/callRecords/{rid}"
    clean.set_faults(rate_429=1.0, retry_after=7)
    response = graph.get(url)
    assert_graph_error(response, 429, "TooManyRequests")
    assert response.headers["Retry-After"] == "7"
    assert get_token(sim).status_code == 200  # token endpoint and control API unaffected
    assert clean.records()
    clean.set_faults(rate_429=0.0, script=["503", "drop_partial", "drop_silent", "ok"])
    assert_graph_error(graph.get(url), 503)
    with pytest.raises(httpx.RemoteProtocolError):
        graph.get(url)
    with pytest.raises(httpx.RemoteProtocolError):
        graph.get(url)
    assert graph.get(url).status_code == 200
    clean.set_faults(latency_ms=300)
    started = time.monotonic()
    assert graph.get(url).status_code == 200
    assert time.monotonic() - started >= 0.3
    faults = clean.stats()["faults"]
    assert faults["429"] == 1 and faults["503"] == 1
    assert faults["drop_partial"] == 1 and faults["drop_silent"] == 1


def test_a_granted_app_role_reaches_reads_only_after_24_scaled_hours(
    graph: httpx.Client, clean: SimClient
) -> None:
    """Without the app role every read is 403; once granted, the managed identity's cached
    token keeps it out for up to 24 hours (managed-identity-best-practice-recommendations,
    "Limitation of using managed identities for authorization"), scaled here to about 2 s."""
    rid = clean.create_record(notify=False)["id"]
    url = f"/communications/callRecords/{rid}"
    clean.set_faults(forbidden=True)
    assert_graph_error(graph.get(url), 403, "Authorization_RequestDenied")
    clean.set_config(time_scale=2 / (24 * 3600))  # 24 hours -> 2 s
    assert clean.set_faults(grant_role=True)["forbidden"] is False
    assert_graph_error(graph.get(url), 403, "Authorization_RequestDenied")
    wait_for(lambda: graph.get(url).status_code == 200, timeout=10)
    assert graph.get(url).json()["id"] == rid  # the data arrives once the role is in the token
    assert clean.stats()["faults"]["403"] >= 2


def test_without_the_app_role_a_subscription_is_neither_created_nor_renewed(
    graph: httpx.Client, clean: SimClient, receiver: Receiver
) -> None:
    """Creating, renewing or reauthorizing a callRecords subscription needs CallRecords.Read.All
    (subscription-post-subscriptions, Permissions): while the role is missing, or not yet in
    the token, each is 403, and the subscription is created once the role arrives."""
    created = subscribe(graph, receiver)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    clean.set_faults(forbidden=True)
    assert_graph_error(subscribe(graph, receiver), 403, "Authorization_RequestDenied")
    renew = {"expirationDateTime": expiry(900)}
    assert_graph_error(graph.patch(f"/subscriptions/{sub_id}", json=renew), 403)
    assert_graph_error(graph.post(f"/subscriptions/{sub_id}/reauthorize"), 403)
    assert graph.get(f"/subscriptions/{sub_id}").status_code == 200  # reading it is allowed
    clean.set_faults(forbidden=False)
    assert graph.patch(f"/subscriptions/{sub_id}", json=renew).status_code == 200
    graph.delete(f"/subscriptions/{sub_id}")
    again = subscribe(graph, receiver)
    assert again.status_code == 201, again.text
    assert [s["id"] for s in graph.get("/subscriptions").json()["value"]] == [again.json()["id"]]


def test_one_record_gets_the_documented_10_first_page_reads_in_20_seconds(
    graph: httpx.Client, clean: SimClient
) -> None:
    """throttling-limits, "Cloud communication service limits": 10 requests / 20 s for one
    record's first page (the defaults, not a test budget); the 11th is 429 with Retry-After,
    and another record is unaffected."""
    rid = clean.create_record(notify=False)["id"]
    other = clean.create_record(notify=False)["id"]
    for _ in range(10):
        assert graph.get(f"/communications/callRecords/{rid}").status_code == 200
    throttled = graph.get(f"/communications/callRecords/{rid}")
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert int(throttled.headers["Retry-After"]) >= 1
    assert graph.get(f"/communications/callRecords/{other}").status_code == 200


def test_throttle_trips_at_the_configured_budget(graph: httpx.Client, clean: SimClient) -> None:
    rid = clean.create_record(notify=False)["id"]
    other = clean.create_record(notify=False)["id"]
    clean.set_faults(throttle=True, record_limit=5, list_limit=3, app_limit=12)
    for _ in range(5):
        assert graph.get(f"/communications/callRecords/{rid}").status_code == 200
    response = graph.get(f"/communications/callRecords/{rid}")
    assert_graph_error(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    assert graph.get(f"/communications/callRecords/{other}").status_code == 200  # per record
    for _ in range(3):
        assert graph.get("/communications/callRecords").status_code == 200
    assert_graph_error(graph.get("/communications/callRecords"), 429)
    for _ in range(3):
        assert graph.get(f"/communications/callRecords/{other}").status_code == 200
    assert_graph_error(graph.get(f"/communications/callRecords/{other}"), 429)  # app budget: 12
    faults = clean.stats()["faults"]
    assert faults == {"throttle_record": 1, "throttle_list": 1, "throttle_app": 1}


# ---------------------------------------------------------------- restart


def test_restart_keeps_records_subscriptions_and_tokens(
    sim: SimulatorProcess, graph: httpx.Client, receiver: Receiver, clean: SimClient
) -> None:
    rid = clean.create_record(sessions=70, notify=False)["id"]
    sub = subscribe(graph, receiver).json()
    before = clean.expected(rid)
    sim.restart()
    assert clean.expected(rid) == before
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 200  # same cached token
    doc, pages, _ = fetch_naively(graph, rid)
    assert pages == [60, 10] and doc == before


def test_simulator_log_shows_no_errors(sim: SimulatorProcess) -> None:
    """Runs last: every bad request above got a 4xx, none an unhandled exception."""
    log = sim.log_path.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, sim.tail()
