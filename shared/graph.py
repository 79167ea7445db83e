"""A small Graph client for callRecords: one httpx client per process, typed errors, and
the fetch that merges every page of a record into one document."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from shared.auth import TokenProvider
from shared.ids import normalize_id

API = "v1.0"
EXPAND = "sessions($expand=segments)"
_NEXT = "@odata.nextLink"
MAX_TRIES = 4  # per request, for network errors and throttling
SHORT_WAIT = 5.0  # seconds: a Retry-After up to this is waited out in place
BACKOFF = 0.5  # seconds, doubled per try, when Graph gives no Retry-After


class GraphError(Exception):
    """Graph answered with an error, or could not be reached."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"Graph {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class NotFound(GraphError):
    """404: for a call record, 'not published yet' (up to 150 min) or 'older than 30 days'."""


class Throttled(GraphError):
    """429, 503 or 504: come back after ``retry_after`` seconds (None: back off yourself)."""


class Unauthorized(GraphError):
    """401 or 403: the identity lacks a token or the CallRecords.Read.All app role."""


class Unreachable(GraphError):
    """The network failed: connection refused or dropped, timeout, truncated body."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error(response: httpx.Response) -> GraphError:
    code, message = "unknown", response.reason_phrase
    try:
        err = orjson.loads(response.content).get("error", {})
        code, message = str(err.get("code", code)), str(err.get("message", message))[:300]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    status = response.status_code
    cls: type[GraphError] = GraphError
    if status == 404:
        cls = NotFound
    elif status in (429, 503, 504):
        cls = Throttled
    elif status in (401, 403):
        cls = Unauthorized
    return cls(status, code, message, _retry_after(response))


@dataclass
class FetchedRecord:
    """A complete record and what it took to get it."""

    document: dict[str, Any]
    pages: int = 1
    session_pages: int = 1
    participant_pages: int = 1
    sessions: int = 0
    participants: int = 0
    requests: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.document.get("id", ""))

    @property
    def version(self) -> int:
        return int(self.document.get("version", 0))


class GraphClient:
    """Authenticated GETs against one Graph root; next links are only followed on that root."""

    def __init__(self, base_url: str, tokens: TokenProvider, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        self.retries: Counter[str] = Counter()  # in-place retries by status (0: network)

    async def request(self, method: str, url: str, json: Any = None) -> dict[str, Any]:
        """One Graph call, with the transient faults absorbed in place.

        A 401 gets one fresh token. Network errors and 429/503/504 are retried here (with
        the Retry-After Graph gives, else a short backoff) while the wait is short; a long
        wait, or one fault too many, raises so the caller can requeue the work instead of
        holding an instance. POST is not retried after a network error (it may have landed).
        """
        if not url.startswith(self.base_url + "/"):
            raise GraphError(0, "ForeignLink", f"refusing to send a token outside {self.base_url}")
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, url, json)
            except Unauthorized as exc:
                if exc.status != 401 or refreshed:
                    raise
                refreshed = True
                self._tokens.invalidate()  # an expired or revoked token: try one fresh one
            except (Unreachable, Throttled) as exc:
                wait = exc.retry_after
                if wait is None:
                    wait = BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311
                if (
                    attempt >= MAX_TRIES
                    or wait > SHORT_WAIT
                    or (isinstance(exc, Unreachable) and method == "POST")
                ):
                    raise
                self.retries[f"{exc.status or exc.code}"] += 1
                await asyncio.sleep(wait)

    async def _once(self, method: str, url: str, json: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self._tokens.token()}"}
        content = orjson.dumps(json) if json is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as exc:  # connect, read, timeouts, protocol errors
            raise Unreachable(0, type(exc).__name__, str(exc)[:200] or "network error") from exc
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise Unreachable(response.status_code, "BadJson", "truncated or invalid JSON") from exc
        if not isinstance(body, dict):
            raise Unreachable(response.status_code, "BadJson", "JSON body is not an object")
        return body

    async def get(self, url: str) -> dict[str, Any]:
        return await self.request("GET", url)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{API}/{path.lstrip('/')}"

    async def _follow(
        self, first: dict[str, Any], key: str, items: list[Any], log: list[str]
    ) -> int:
        """Follow ``{key}@odata.nextLink`` (or ``@odata.nextLink``) verbatim, appending values."""
        link = first.get(f"{key}{_NEXT}") if key else first.get(_NEXT)
        pages = 1
        while link:
            log.append(link)
            page = await self.get(str(link))
            values = page.get("value")
            if not isinstance(values, list):
                raise Unreachable(200, "BadPage", f"a {key or 'list'} page has no value array")
            items.extend(values)
            link = page.get(_NEXT)
            pages += 1
        return pages

    async def fetch_call_record(self, record_id: str) -> FetchedRecord:
        """The record with every session (and its segments) and every participants_v2 entry.

        The sessions chain and the participants chain run concurrently; the result is the
        first response with the pages merged in and no nextLink annotations, or an exception:
        never a partial record.
        """
        rid = normalize_id(record_id)
        log: list[str] = []
        record_url = self.url(f"communications/callRecords/{rid}?$expand={EXPAND}")
        participants_url = self.url(f"communications/callRecords/{rid}/participants_v2")
        log.append(record_url)

        async def participants() -> tuple[list[Any], int]:
            log.append(participants_url)
            first = await self.get(participants_url)
            items = list(first.get("value") or [])
            pages = await self._follow(first, "", items, log)
            return items, pages

        record_task = asyncio.ensure_future(self.get(record_url))
        parts_task = asyncio.ensure_future(participants())
        try:
            doc = await record_task
            sessions = list(doc.get("sessions") or [])
            session_pages = await self._follow(doc, "sessions", sessions, log)
            people, participant_pages = await parts_task
        except BaseException:
            for task in (record_task, parts_task):
                task.cancel()
            await asyncio.gather(record_task, parts_task, return_exceptions=True)
            raise
        if doc.get("id", rid).lower() != rid:
            raise GraphError(200, "IdMismatch", f"asked for {rid}, got {doc.get('id')!r}")
        doc.pop(f"sessions{_NEXT}", None)
        doc["sessions"] = sessions
        # Inline participants_v2 (if Graph ever expands it) are superseded by the full list;
        # annotations of the record itself (@odata.context ones) are kept as Graph sent them.
        doc.pop(f"participants_v2{_NEXT}", None)
        doc["participants_v2"] = people
        return FetchedRecord(
            document=doc,
            pages=1 + (session_pages - 1) + participant_pages,
            session_pages=session_pages,
            participant_pages=participant_pages,
            sessions=len(sessions),
            participants=len(people),
            requests=log,
        )
