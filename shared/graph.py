"""A small Graph client for callRecords: one httpx client per process, typed errors, and
the fetch that merges every page of a record into one document."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson

from shared.auth import TokenProvider
from shared.ids import normalize_id
from shared.ratelimit import AdaptiveRate, SlidingWindow

API = "v1.0"
EXPAND = "sessions($expand=segments)"
_NEXT = "@odata.nextLink"
MAX_TRIES = 4  # per request, for network errors and throttling
SHORT_WAIT = 5.0  # seconds: a Retry-After up to this is waited out in place
BACKOFF = 0.5  # seconds, doubled per try, when Graph gives no Retry-After
PER_RECORD_LIMIT, PER_RECORD_PERIOD = 40, 20.0  # Graph's limit for one call record


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
        self.pace = AdaptiveRate()  # the app-wide budget, learned from 429s

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
        await self.pace.wait()
        try:
            response = await self._http.request(method, url, headers=headers, content=content)
        except (
            httpx.HTTPError,
            aiohttp.ClientError,
            TimeoutError,
        ) as exc:  # connect, read, timeouts
            raise Unreachable(0, type(exc).__name__, str(exc)[:200] or "network error") from exc
        if response.status_code == 429:
            error = _error(response)
            self.pace.throttled(error.retry_after)
            raise error
        self.pace.answered()
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

    async def open_call_record(self, record_id: str) -> RecordStream:
        """Start fetching a record: its first response now, the rest as the caller reads it.

        The participants_v2 chain starts at once, concurrently with the record; sessions pages
        are read one by one (each nextLink comes from the page before), so a huge meeting can
        be written page by page without holding it whole. Requests for one record are paced
        at Graph's 40 / 20 s.
        """
        rid = normalize_id(record_id)
        stream = RecordStream(self, rid)
        stream.participants = asyncio.ensure_future(stream.fetch_participants())
        try:
            head = await stream.get(self.url(f"communications/callRecords/{rid}?$expand={EXPAND}"))
        except BaseException:
            await stream.close()
            raise
        if str(head.get("id", rid)).lower() != rid:
            await stream.close()
            raise GraphError(200, "IdMismatch", f"asked for {rid}, got {head.get('id')!r}")
        stream.first_sessions = list(head.pop("sessions", None) or [])
        stream.next_link = head.pop(f"sessions{_NEXT}", None)
        # Inline participants_v2 (if Graph ever expands it) are superseded by the full list;
        # annotations of the record itself (@odata.context ones) are kept as Graph sent them.
        head.pop("participants_v2", None)
        head.pop(f"participants_v2{_NEXT}", None)
        stream.head = head
        return stream

    async def fetch_call_record(self, record_id: str) -> FetchedRecord:
        """The whole record in memory: every session (with segments), every participants_v2.

        The first response with the pages merged in and no nextLink annotations, or an
        exception: never a partial record.
        """
        stream = await self.open_call_record(record_id)
        try:
            sessions: list[Any] = []
            async for page in stream.session_pages():
                sessions.extend(page)
            people = await stream.participants
        finally:
            await stream.close()
        doc = stream.head
        doc["sessions"] = sessions
        doc["participants_v2"] = people
        return FetchedRecord(
            document=doc,
            pages=stream.pages,
            session_pages=stream.session_page_count,
            participant_pages=stream.participant_page_count,
            sessions=len(sessions),
            participants=len(people),
            requests=stream.requests,
        )


class RecordStream:
    """One record being fetched: ``head`` (the record without sessions), ``session_pages()``
    and the ``participants`` task. Close it to cancel what is still running."""

    def __init__(self, graph: GraphClient, record_id: str) -> None:
        self.graph = graph
        self.id = record_id
        self.head: dict[str, Any] = {}
        self.first_sessions: list[Any] = []
        self.next_link: str | None = None
        self.participants: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.requests: list[str] = []
        self.session_page_count = 0
        self.participant_page_count = 0
        self.participant_count = 0
        self.sessions = 0
        self._window = SlidingWindow(PER_RECORD_LIMIT, PER_RECORD_PERIOD)

    @property
    def pages(self) -> int:
        """Graph requests that returned data: the record, sessions pages, participants pages."""
        return max(self.session_page_count, 1) + self.participant_page_count

    @property
    def version(self) -> int:
        return int(self.head.get("version", 0))

    async def get(self, url: str) -> dict[str, Any]:
        await self._window.wait()
        self.requests.append(url)
        return await self.graph.get(url)

    async def session_pages(self) -> AsyncIterator[list[Any]]:
        """The first page (from the record's response), then every nextLink page, in order."""
        self.session_page_count = 1
        self.sessions = len(self.first_sessions)
        yield self.first_sessions
        link = self.next_link
        while link:
            page = await self.get(str(link))
            values = page.get("value")
            if not isinstance(values, list):
                raise Unreachable(200, "BadPage", "a sessions page has no value array")
            self.session_page_count += 1
            self.sessions += len(values)
            yield values
            link = page.get(_NEXT)

    async def fetch_participants(self) -> list[Any]:
        url: str | None = self.graph.url(f"communications/callRecords/{self.id}/participants_v2")
        items: list[Any] = []
        while url:
            page = await self.get(url)
            values = page.get("value")
            if not isinstance(values, list):
                raise Unreachable(200, "BadPage", "a participants_v2 page has no value array")
            self.participant_page_count += 1
            self.participant_count += len(values)
            items.extend(values)
            url = page.get(_NEXT)
        return items

    async def close(self) -> None:
        if not self.participants.done():
            self.participants.cancel()
        await asyncio.gather(self.participants, return_exceptions=True)
