"""The one pager: every paged Graph read of the app goes through ``pages``.

The reads: a call record's ``sessions`` and ``participants_v2``
(learn.microsoft.com/graph/api/callrecords-callrecord-get,
.../callrecords-callrecord-list-participants_v2), List callRecords
(.../callrecords-cloudcommunications-list-callrecords), List subscriptions
(.../subscription-list), getPstnCalls and getDirectRoutingCalls
(.../callrecords-callrecord-getpstncalls, .../callrecords-callrecord-getdirectroutingcalls).

Each page is one GET; its ``@odata.nextLink`` (learn.microsoft.com/graph/paging) is the
continuation token: ``pages(..., token=link)`` continues a read where an earlier one, in
another invocation or process, stopped (the resumable record fetch keeps it in its
checkpoint). For every request the pager

- resolves the link: the documented examples show next links in the OData context-URL form
  (``.../v1.0/$metadata#communications/callRecords('{id}')/sessions?$skiptoken=...``), which
  an HTTP client would send as ``/v1.0/$metadata``: it becomes the resource path it names;
- keeps the host pinned: a link to any other host than the client's Graph root is refused
  before a token is attached (``ForeignLink``);
- paces: ``pace(url)`` runs before each request (a sliding window for a listing, the
  per-record limits for a record, a time budget that stops the read with the link to go on
  from: ``paced_until``);
- honours Retry-After through a ``RetryPolicy`` (shared/graph/retry.py) for throttles the
  client's in-place retries did not absorb;
- optionally reads ahead: the next page is requested while the caller works on this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import msgspec
import orjson

from shared.graph.errors import GraphError
from shared.graph.retry import RetryPolicy

log = logging.getLogger(__name__)

NEXT_LINK = "@odata.nextLink"

# A function run before each request of a read, with the URL about to be requested.
Pace = Callable[[str], Awaitable[None]]


class Page(msgspec.Struct):
    """A Graph collection page, its items kept as raw JSON (validated, never turned into
    Python objects unless asked: a record's pages are only copied into the archive)."""

    value: list[msgspec.Raw]
    next_link: str | None = msgspec.field(default=None, name="@odata.nextLink")

    def objects(self) -> list[Any]:
        """The items decoded (for the reads that look into them)."""
        return [orjson.loads(bytes(item)) for item in self.value]


_PAGE = msgspec.json.Decoder(Page)


def parse_page(content: bytes) -> Page:
    return _PAGE.decode(content)


class Reader(Protocol):
    """What the pager needs of a Graph client (shared/graph/client.py's GraphClient)."""

    base_url: str

    async def request(
        self, method: str, url: str, json: Any = None, parse: Callable[[bytes], Any] = ...
    ) -> Any: ...


def resolve_link(link: str) -> str:
    """A next link as a URL to GET.

    A link in the context-URL form ``.../v1.0/$metadata#communications/callRecords('{id}')
    /sessions?...`` is turned into the resource path it names
    (``.../v1.0/communications/callRecords('{id}')/sessions?...``, the OData key form Graph
    accepts); any other link is returned as it is.
    """
    parts = urlsplit(link)
    head, sep, _ = link.partition("#")
    if sep and parts.fragment and head.rstrip("/").endswith("/$metadata"):
        return head.rstrip("/")[: -len("$metadata")] + parts.fragment.lstrip("/")
    return link


def pinned(base_url: str, url: str) -> str:
    """``url`` if it is under the Graph root ``base_url``; else ForeignLink (a next link
    never carries the app's token to another host)."""
    if not url.startswith(base_url.rstrip("/") + "/"):
        raise GraphError(0, "ForeignLink", f"refusing to send a token outside {base_url}")
    return url


async def _no_pace(url: str) -> None:
    return None


async def pages(
    graph: Reader,
    url: str | None = None,
    *,
    token: str | None = None,
    pace: Pace = _no_pace,
    retry: RetryPolicy | None = None,
    read_ahead: bool = False,
) -> AsyncGenerator[Page, None]:
    """Every page of a collection, from ``url`` or from a continuation ``token`` (a next
    link an earlier read handed out as ``page.next_link``)."""
    link = token or url

    async def fetch(link: str) -> Page:
        target = pinned(graph.base_url, resolve_link(link))

        async def once() -> Page:
            await pace(target)
            page: Page = await graph.request("GET", target, parse=parse_page)
            return page

        if retry is None:
            return await once()
        name = retry.name

        def note(exc: BaseException, wait: float) -> None:
            log.warning("%s: %s; again in %.0f s", name, exc, wait)

        return await retry.run(once, on_retry=note)

    if link is None:
        return
    ahead: asyncio.Future[Page] | None = None
    try:
        page = await fetch(link)
        while True:
            if read_ahead and page.next_link:
                ahead = asyncio.ensure_future(fetch(page.next_link))
            yield page
            if page.next_link is None:
                return
            if ahead is not None:
                page, ahead = await ahead, None
            else:
                page = await fetch(page.next_link)
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


async def first_page(graph: Reader, url: str, *, pace: Pace = _no_pace) -> Page:
    """The first page of a collection alone (a sample, not a read of everything)."""
    async with contextlib.aclosing(pages(graph, url, pace=pace)) as it:
        async for page in it:
            return page
    raise GraphError(200, "NoPage", f"{url[:120]}: no page")  # unreachable: one page always


class Limiter(Protocol):
    async def wait(self) -> None: ...


def paced_by(limiter: Limiter) -> Pace:
    """A ``pace`` from a limiter (shared/ratelimit.py's SlidingWindow)."""

    async def pace(url: str) -> None:
        await limiter.wait()

    return pace


class OutOfTime(Exception):
    """The read's time budget was spent before a request: ``link`` is where to go on (a
    continuation token for ``pages``)."""

    def __init__(self, link: str, message: str) -> None:
        super().__init__(message)
        self.link = link


def paced_until(limiter: Limiter, deadline: float, *, free: int = 0, what: str = "read") -> Pace:
    """``paced_by(limiter)`` that raises OutOfTime before a request once ``deadline``
    (time.monotonic()) has passed; the first ``free`` requests are sent whatever the time, so
    a read resumed with no time left still moves on a page."""
    sent = 0

    async def pace(url: str) -> None:
        nonlocal sent
        if sent >= free and time.monotonic() > deadline:
            raise OutOfTime(url, f"time budget spent before {what}")
        sent += 1
        await limiter.wait()

    return pace
