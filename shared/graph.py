"""A small Graph client for callRecords: one httpx client per process, typed errors, and
the fetch that merges every page of a record into one document."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx
import msgspec
import orjson

from shared.auth import TokenProvider
from shared.ids import normalize_id
from shared.jsonvalues import as_object
from shared.ratelimit import AdaptiveRate, SlidingWindow
from shared.settings import FIRST_PAGE_PACE, NEXT_PAGES_PACE, Pace

API = "v1.0"
EXPAND = "sessions($expand=segments)"
_NEXT = "@odata.nextLink"
MAX_TRIES = 4  # per request, for network errors and throttling
SHORT_WAIT = 5.0  # seconds: a Retry-After up to this is waited out in place
BACKOFF = 0.5  # seconds, doubled per try, when Graph gives no Retry-After
HEAD_KEYS = ("id", "version", "startDateTime", "endDateTime")  # decoded; the rest stays raw


T = TypeVar("T")


class Page(msgspec.Struct):
    """A Graph collection page, its items kept as raw JSON (validated, never turned into
    Python objects: they are only copied into the archive)."""

    value: list[msgspec.Raw]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")


_PAGE = msgspec.json.Decoder(Page)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def _object(content: bytes) -> dict[str, Any]:
    """A JSON object body as a dict ({} for an empty body, e.g. 204)."""
    if not content:
        return {}
    body = as_object(orjson.loads(content))
    if body is None:
        raise msgspec.ValidationError("JSON body is not an object")
    return body


def _fields(content: bytes) -> dict[str, msgspec.Raw]:
    return _FIELDS.decode(content)


def _page(content: bytes) -> Page:
    return _PAGE.decode(content)


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


class Paused(Throttled):
    """A record's fetch stopped at a checkpoint (its time budget, or a long wait for Graph's
    per-record limit): queue it again after ``retry_after`` seconds and it continues there."""


class Unauthorized(GraphError):
    """401 or 403: the identity lacks a token or the CallRecords.Read.All app role."""


class Unreachable(GraphError):
    """The network failed: connection refused or dropped, timeout, truncated body."""


class BadPage(GraphError):
    """Graph answered 200 with something that is not the JSON asked for (e.g. the XML of
    ``/v1.0/$metadata``): a bug or a changed API, never retried as a network fault."""


def resolve_link(link: str) -> str:
    """A next link as a URL to GET.

    The documentation's examples (Get callRecord, List sessions, List participants_v2) show
    next links in the context-URL form ``.../v1.0/$metadata#communications/callRecords('{id}')
    /sessions?$expand=segments&$skiptoken=...``; an HTTP client would drop everything after
    ``#`` and fetch ``/v1.0/$metadata``. Such a link is turned into the resource path it names
    (``.../v1.0/communications/callRecords('{id}')/sessions?...``, the OData key form Graph
    accepts); any other link is returned as it is.
    """
    parts = urlsplit(link)
    head, sep, _ = link.partition("#")
    if sep and parts.fragment and head.rstrip("/").endswith("/$metadata"):
        return head.rstrip("/")[: -len("$metadata")] + parts.fragment.lstrip("/")
    return link


def _is_json(response: httpx.Response) -> bool:
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


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


class GraphClient:
    """Authenticated GETs against one Graph root; next links are only followed on that root."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        http: httpx.AsyncClient,
        first_pace: Pace = FIRST_PAGE_PACE,
        next_pace: Pace = NEXT_PAGES_PACE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        self.retries: Counter[str] = Counter()  # in-place retries by status (0: network)
        self.pace = AdaptiveRate()  # the app-wide budget, learned from 429s
        self.first_pace, self.next_pace = first_pace, next_pace
        self._records: dict[str, RecordWindows] = {}

    async def request(
        self, method: str, url: str, json: Any = None, parse: Callable[[bytes], T] = _object
    ) -> T:
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
                return await self._once(method, url, json, parse)
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

    async def _once(self, method: str, url: str, json: Any, parse: Callable[[bytes], T]) -> T:
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
        if response.content and not _is_json(response):
            ctype = response.headers.get("Content-Type", "none")
            raise BadPage(
                response.status_code,
                "NotJson",
                f"GET {url[:120]} answered {ctype[:60]}, not JSON: a link Graph does not serve "
                "as a page (the $metadata document?)",
            )
        try:
            return parse(response.content)
        except msgspec.ValidationError as exc:
            raise BadPage(
                response.status_code, "NotAPage", f"{url[:120]}: not the JSON asked for: {exc}"
            ) from exc
        except (orjson.JSONDecodeError, msgspec.DecodeError) as exc:
            # A truncated body (a connection dropped mid-response) lands here: retried.
            raise Unreachable(response.status_code, "BadJson", f"invalid JSON: {exc}") from exc

    async def get(self, url: str) -> dict[str, Any]:
        return await self.request("GET", url)

    async def get_page(self, url: str) -> Page:
        """One collection page (``value`` items as raw JSON bytes, ``next_link``)."""
        return await self.request("GET", url, parse=_page)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{API}/{path.lstrip('/')}"

    def record_windows(self, record_id: str) -> RecordWindows:
        """The pacing windows of one record, kept per process so that a record fetched again
        (a resumed fetch) keeps to the limits its earlier requests count against."""
        windows = self._records.get(record_id)
        if windows is None:
            if len(self._records) > 10_000:  # forget records with nothing in their windows
                self._records = {k: w for k, w in self._records.items() if w.busy()}
            windows = self._records[record_id] = RecordWindows(
                SlidingWindow(self.first_pace.requests, _margin(self.first_pace.seconds)),
                SlidingWindow(self.next_pace.requests, _margin(self.next_pace.seconds)),
            )
        return windows

    def record_url(self, record_id: str) -> str:
        return self.url(f"communications/callRecords/{normalize_id(record_id)}?$expand={EXPAND}")

    def participants_url(self, record_id: str) -> str:
        return self.url(f"communications/callRecords/{normalize_id(record_id)}/participants_v2")

    def version_url(self, record_id: str) -> str:
        return self.url(f"communications/callRecords/{normalize_id(record_id)}?$select=id,version")


def _margin(seconds: float) -> float:
    """A window a little longer than Graph's, so clock and latency differences between this
    process and Graph never push a request over the limit."""
    return seconds * 1.02 + 0.05


@dataclass
class RecordWindows:
    """Graph's per-record limits: one window for first pages (the record itself, the first
    participants_v2 page, the version check), one for the pages next links lead to."""

    first: SlidingWindow
    following: SlidingWindow

    def busy(self) -> bool:
        return bool(self.first.calls or self.following.calls)


def parse_fields(content: bytes) -> dict[str, msgspec.Raw]:
    """A record response as its top-level fields, each kept as raw JSON."""
    return _fields(content)


def parse_page(content: bytes) -> Page:
    return _page(content)


@dataclass
class RecordHead:
    """The record's first response, split: ``head`` (id, version, startDateTime, decoded),
    its own fields as raw JSON, the first sessions, and the sessions next link."""

    head: dict[str, Any]
    fields: dict[str, msgspec.Raw]
    first_sessions: list[msgspec.Raw]
    next_link: str | None

    @classmethod
    def split(cls, record_id: str, fields: dict[str, msgspec.Raw]) -> RecordHead:
        head = {k: orjson.loads(bytes(fields[k])) for k in HEAD_KEYS if k in fields}
        if str(head.get("id", record_id)).lower() != record_id:
            raise BadPage(200, "IdMismatch", f"asked for {record_id}, got {head.get('id')!r}")
        sessions = fields.pop("sessions", None)
        first = _ITEMS.decode(sessions) if sessions is not None else []
        link = fields.pop(f"sessions{_NEXT}", None)
        next_link = orjson.loads(bytes(link)) if link is not None else None
        # Inline participants_v2 (if Graph ever expands it) are superseded by the full list;
        # annotations of the record itself (@odata.context ones) are kept as Graph sent them.
        fields.pop("participants_v2", None)
        fields.pop(f"participants_v2{_NEXT}", None)
        return cls(head, fields, first, str(next_link) if next_link else None)

    @property
    def version(self) -> int:
        return int(self.head.get("version", 0))

    def prefix(self) -> bytes:
        """``{`` and the record's own fields, as Graph sent them, ready for ``"sessions"``."""
        parts = [orjson.dumps(k) + b":" + bytes(v) for k, v in self.fields.items()]
        return b"{" + b",".join(parts) + (b"," if parts else b"")
