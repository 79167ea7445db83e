"""The Graph client: authenticated requests over one httpx client per process, pinned to one
Graph root, paced by the app-wide adaptive rate, transient faults retried in place by
``retry.GRAPH_IN_PLACE``, errors raised as the classes of ``errors.py``; and the URLs and
per-record limits of a call record."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import msgspec
import orjson

from shared.auth import TokenProvider
from shared.graph.errors import BadPage, GraphError, Unauthorized, Unreachable, error_from
from shared.graph.paging import NEXT_LINK, pinned
from shared.graph.retry import GRAPH_IN_PLACE, RetryPolicy
from shared.ids import normalize_id
from shared.jsonvalues import as_object
from shared.ratelimit import AdaptiveRate, SlidingWindow
from shared.settings import FIRST_PAGE_PACE, NEXT_PAGES_PACE, Pace

API = "v1.0"
EXPAND = "sessions($expand=segments)"
HEAD_KEYS = ("id", "version", "startDateTime", "endDateTime")  # decoded; the rest stays raw


T = TypeVar("T")


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


def _is_json(response: httpx.Response) -> bool:
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


class GraphClient:
    """Authenticated GETs against one Graph root; next links are only followed on that root."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        http: httpx.AsyncClient,
        first_pace: Pace = FIRST_PAGE_PACE,
        next_pace: Pace = NEXT_PAGES_PACE,
        retry: RetryPolicy = GRAPH_IN_PLACE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        self.retries: Counter[str] = Counter()  # in-place retries by status (0: network)
        self.pace = AdaptiveRate()  # the app-wide budget, learned from 429s
        self.first_pace, self.next_pace = first_pace, next_pace
        self.retry = retry
        self._records: dict[str, RecordLimits] = {}

    async def request(
        self, method: str, url: str, json: Any = None, parse: Callable[[bytes], T] = _object
    ) -> T:
        """One Graph call, with the transient faults absorbed in place (``self.retry``).

        A 401 gets one fresh token. Network errors and 429/503/504 are retried here (with
        the Retry-After Graph gives, else a short back-off) while the wait is short; a long
        wait, or one fault too many, raises so the caller can queue the work again instead
        of holding an instance. POST is not retried after a network error (it may have
        landed).
        """
        pinned(self.base_url, url)
        refreshed = False

        async def authorized() -> T:
            nonlocal refreshed
            try:
                return await self._once(method, url, json, parse)
            except Unauthorized as exc:
                if exc.status != 401 or refreshed:
                    raise
                refreshed = True
                self._tokens.invalidate()  # an expired or revoked token: try one fresh one
                return await self._once(method, url, json, parse)

        def count(exc: BaseException, wait: float) -> None:
            if isinstance(exc, GraphError):
                self.retries[f"{exc.status or exc.code}"] += 1

        return await self.retry.run(authorized, idempotent=method != "POST", on_retry=count)

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
            error = error_from(response)
            self.pace.throttled(error.retry_after)
            raise error
        self.pace.answered()
        if response.status_code >= 400:
            raise error_from(response)
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

    def url(self, path: str) -> str:
        return f"{self.base_url}/{API}/{path.lstrip('/')}"

    def record_limits(self, record_id: str) -> RecordLimits:
        """The per-record limits of one record, kept per process so that a record fetched again
        (a resumed fetch) keeps to the limits its earlier requests count against."""
        limits = self._records.get(record_id)
        if limits is None:
            if len(self._records) > 10_000:  # forget records with nothing in their windows
                self._records = {k: w for k, w in self._records.items() if w.busy()}
            limits = self._records[record_id] = RecordLimits(
                SlidingWindow(self.first_pace.requests, _margin(self.first_pace.seconds)),
                SlidingWindow(self.next_pace.requests, _margin(self.next_pace.seconds)),
            )
        return limits

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
class RecordLimits:
    """Graph's per-record limits, as sliding windows: one for first pages (the record itself, the first
    participants_v2 page, the version check), one for the pages next links lead to."""

    first: SlidingWindow
    following: SlidingWindow

    def busy(self) -> bool:
        return bool(self.first.calls or self.following.calls)


def parse_fields(content: bytes) -> dict[str, msgspec.Raw]:
    """A record response as its top-level fields, each kept as raw JSON."""
    return _FIELDS.decode(content)


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
        link = fields.pop(f"sessions{NEXT_LINK}", None)
        next_link = orjson.loads(bytes(link)) if link is not None else None
        # Inline participants_v2 (if Graph ever expands it) are superseded by the full list;
        # annotations of the record itself (@odata.context ones) are kept as Graph sent them.
        fields.pop("participants_v2", None)
        fields.pop(f"participants_v2{NEXT_LINK}", None)
        return cls(head, fields, first, str(next_link) if next_link else None)

    @property
    def version(self) -> int:
        return int(self.head.get("version", 0))

    def prefix(self) -> bytes:
        """``{`` and the record's own fields, as Graph sent them, ready for ``"sessions"``."""
        parts = [orjson.dumps(k) + b":" + bytes(v) for k, v in self.fields.items()]
        return b"{" + b",".join(parts) + (b"," if parts else b"")
