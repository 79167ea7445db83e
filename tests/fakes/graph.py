"""An in-memory Microsoft Graph for the functional tier: the app's real GraphClient (and so
its pager, retry policy and error map) over an ``httpx.MockTransport``, no socket, no process.

It serves what the app reads, in the shapes Microsoft documents:

- a call record with ``$expand=sessions($expand=segments)``: the record's fields, the first
  sessions page and ``sessions@odata.nextLink`` (in the context-URL form the documentation's
  examples show, ``.../v1.0/$metadata#communications/callRecords('{id}')/sessions?...``,
  learn.microsoft.com/graph/api/callrecords-callrecord-get), its following sessions pages,
  and its participants_v2 pages (.../callrecords-callrecord-list-participants_v2);
- ``$select=id,version`` of a record;
- List callRecords with a ``startDateTime`` range filter
  (.../callrecords-cloudcommunications-list-callrecords);
- subscriptions: list, create (409 "Subscription Id <id> already exists for the requested
  combination" for a second one with the same resource and changeType,
  .../subscription-post-subscriptions), get, PATCH, DELETE, reauthorize;
- getPstnCalls / getDirectRoutingCalls over a range (.../callrecords-callrecord-getpstncalls).

``script`` queues answers for the next requests (``(429, 40.0)``: a 429 with Retry-After
40 s); ``before`` runs before each request is answered (e.g. to publish a new version
mid-fetch); ``interleave`` lets other tasks run while a request is in flight, as they would
during a network round trip (for tests of work done by several callers at once).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import orjson
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from shared.auth import TokenProvider
from shared.clock import parse_graph_datetime
from shared.graph import GraphClient
from shared.settings import Pace

BASE = "https://graph.test"
FAST = Pace(10_000, 1.0)  # per-record limits that never hold a functional test


class FakeCredential:
    """A credential that hands out a token without asking anyone."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


@dataclass
class FakeRecord:
    id: str
    start: datetime
    version: int = 1
    sessions: int = 1
    participants: int = 1

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "type": "groupCall",
            "startDateTime": self.start.isoformat().replace("+00:00", "Z"),
            "endDateTime": self.start.isoformat().replace("+00:00", "Z"),
        }


@dataclass
class FakeGraph:
    page_size: int = 2
    metadata_links: bool = True  # next links in the $metadata# context-URL form
    records: dict[str, FakeRecord] = field(default_factory=dict[str, FakeRecord])
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    usage_rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict[str, list[dict[str, Any]]]
    )
    secrets: dict[str, str] = field(default_factory=dict[str, str])  # clientState by id
    unlisted: set[str] = field(default_factory=set[str])  # created, not listed yet
    script: list[tuple[int, float | None]] = field(default_factory=list[tuple[int, float | None]])
    before: Callable[[httpx.Request], None] | None = None
    interleave: bool = False
    requests: list[str] = field(default_factory=list[str])

    # ---- setting the scene

    def add_record(self, start: datetime, sessions: int = 1, participants: int = 1) -> FakeRecord:
        record = FakeRecord(str(uuid.uuid4()), start, 1, sessions, participants)
        self.records[record.id] = record
        return record

    def client(self, **kwargs: Any) -> GraphClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))
        credential = cast(AsyncTokenCredential, FakeCredential())
        tokens = TokenProvider(credential, "https://graph.microsoft.com/.default")
        return GraphClient(BASE, tokens, http, first_pace=FAST, next_pace=FAST, **kwargs)

    # ---- answering

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        if self.interleave:
            await asyncio.sleep(0)  # the request is on its way: another caller's turn
        response = self.handler(request)
        if self.interleave:
            await asyncio.sleep(0)  # and so is the answer
        return response

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(f"{request.method} {unquote(url)}")
        if self.before is not None:
            self.before(request)
        if self.script:
            status, retry_after = self.script.pop(0)
            if status != 200:
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                return _error(status, "scripted", "scripted answer", headers)
        parts = urlsplit(url)
        path = unquote(parts.path).removeprefix("/v1.0/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            if path.startswith("subscriptions"):
                return self._subscriptions(request, path, query)
            return self._records(path, query)
        except KeyError:
            return _error(404, "NotFound", "not found")

    def _page(self, items: list[Any], skip: int, link: Callable[[int], str]) -> dict[str, Any]:
        end = skip + self.page_size
        page: dict[str, Any] = {"value": items[skip:end]}
        if end < len(items):
            page["@odata.nextLink"] = link(end)
        return page

    def _records(self, path: str, query: dict[str, str]) -> httpx.Response:
        skip = int(query.get("$skiptoken", "0"))
        m = re.fullmatch(r"communications/callRecords(?:/|\(')([0-9a-f-]{36})(?:'\))?(/\w+)?", path)
        if m:
            record = self.records[m.group(1)]
            what = (m.group(2) or "").strip("/")
            sessions = [{"id": f"s{i}", "segments": []} for i in range(record.sessions)]
            if what == "sessions":
                return _json(self._page(sessions, skip, lambda n: self._sessions_link(record, n)))
            if what == "participants_v2":
                people = [{"id": f"p{i}"} for i in range(record.participants)]
                return _json(self._page(people, skip, lambda n: self._participants_link(record, n)))
            if query.get("$select") == "id,version":
                return _json({"id": record.id, "version": record.version})
            first = self._page(sessions, 0, lambda n: self._sessions_link(record, n))
            body = {**record.fields(), "sessions": first["value"]}
            if "@odata.nextLink" in first:
                body["sessions@odata.nextLink"] = first["@odata.nextLink"]
            return _json(body)
        m = re.fullmatch(
            r"communications/callRecords/(get\w+)\(fromDateTime=([^,]+),toDateTime=([^)]+)\)", path
        )
        if m:
            since, until = parse_graph_datetime(m.group(2)), parse_graph_datetime(m.group(3))
            rows = [
                r
                for r in self.usage_rows.get(m.group(1), [])
                if since <= parse_graph_datetime(r["startDateTime"]) < until
            ]
            return _json(self._page(rows, skip, lambda n: f"{BASE}/v1.0/{path}?$skiptoken={n}"))
        if path == "communications/callRecords":
            flt = query["$filter"]
            ge = re.search(r"startDateTime ge (\S+)", flt)
            lt = re.search(r"startDateTime lt (\S+)", flt)
            assert ge and lt, flt
            since, until = parse_graph_datetime(ge.group(1)), parse_graph_datetime(lt.group(1))
            listed = [r.fields() for r in self.records.values() if since <= r.start < until]
            return _json(
                self._page(
                    listed,
                    skip,
                    lambda n: (
                        f"{BASE}/v1.0/communications/callRecords?$filter={flt}&$skiptoken={n}"
                    ),
                )
            )
        raise KeyError(path)

    def _sessions_link(self, record: FakeRecord, skip: int) -> str:
        if self.metadata_links:
            return (
                f"{BASE}/v1.0/$metadata#communications/callRecords('{record.id}')/sessions"
                f"?$expand=segments&$skiptoken={skip}"
            )
        return f"{BASE}/v1.0/communications/callRecords/{record.id}/sessions?$skiptoken={skip}"

    def _participants_link(self, record: FakeRecord, skip: int) -> str:
        return (
            f"{BASE}/v1.0/communications/callRecords/{record.id}/participants_v2?$skiptoken={skip}"
        )

    def _subscriptions(
        self, request: httpx.Request, path: str, query: dict[str, str]
    ) -> httpx.Response:
        parts = path.split("/")
        body: dict[str, Any] = orjson.loads(request.content) if request.content else {}
        if len(parts) == 1 and request.method == "GET":
            subs = [s for s in self.subscriptions.values() if s["id"] not in self.unlisted]
            skip = int(query.get("$skiptoken", "0"))
            return _json(
                self._page(subs, skip, lambda n: f"{BASE}/v1.0/subscriptions?$skiptoken={n}")
            )
        if len(parts) == 1 and request.method == "POST":
            for sub in self.subscriptions.values():
                if sub["resource"] == body["resource"] and sub["changeType"] == body["changeType"]:
                    return _error(
                        409,
                        "ExtensionError",
                        f"Subscription Id {sub['id']} already exists for the requested combination",
                    )
            sub = {"id": str(uuid.uuid4()), **body}
            self.secrets[sub["id"]] = sub.pop("clientState", "")  # Graph does not show it back
            self.subscriptions[sub["id"]] = sub
            return _json(sub, 201)
        sub = self.subscriptions[parts[1]]
        if len(parts) == 3 and parts[2] == "reauthorize":
            return httpx.Response(204)
        if request.method == "GET":
            return _json(sub)
        if request.method == "PATCH":
            sub.update(body)
            return _json(sub)
        if request.method == "DELETE":
            del self.subscriptions[parts[1]]
            return httpx.Response(204)
        raise KeyError(path)


def _json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps({"error": {"code": code, "message": message}}),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
