"""Fetching one call record complete, page by page, resumable across invocations.

A 10,000-session town hall is ~170 sessions pages and ~80 participants_v2 pages. Graph
allows one record 10 requests / 20 s for its first page and 50 / 5 min for the following
pages (the stricter revision of learn.microsoft.com/graph/throttling-limits), so such a
record takes over 20 minutes: longer than one function invocation should run. The fetch
therefore writes each page into staged blocks of the record's blob as it goes and, when its
time budget is spent or Graph's limit asks for a long wait, saves a checkpoint (the next
link, the staged block ids, the counts) in the state store and raises ``Paused``; the retry
policy queues the record again after that delay, and the next attempt continues from the
checkpoint instead of page 1.

Order: the record first (its version names the blob), then every sessions page, then every
participants_v2 page, so the document is written front to back and no page of another
version can slip in unseen: before the commit the version is asked again
(``$select=id,version``), and if Graph has published a newer one meanwhile nothing is
committed and the record is fetched again at its new version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from shared.blobstore import StaleBlocks
from shared.graph import GraphError, RecordHead, pages, parse_fields
from shared.graph.retry import RECORD_PACE, RetryLater
from shared.ids import normalize_id
from shared.ports import FetchPorts, GraphPort, StagedPort

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # folder in the state container
MAX_RESTARTS = 3  # new versions published while fetching, in one invocation
PARTICIPANTS_UNAVAILABLE = (
    b'"@archiver.participants_v2":"not fetched: participants_v2 is not available in this '
    b'cloud (GRAPH_PARTICIPANTS_V2)"'
)


class Phase(StrEnum):
    SESSIONS = "sessions"
    PARTICIPANTS = "participants"
    DONE = "done"


@dataclass
class Checkpoint:
    """Where a fetch stands: enough to continue it in another invocation or process."""

    id: str
    head: dict[str, Any]  # id, version, startDateTime, endDateTime
    phase: Phase
    link: str | None  # the next request of this phase
    block_ids: list[str] = field(default_factory=list[str])
    size: int = 0  # bytes staged
    items: int = 0  # items written in the current array (a comma before the next one)
    sessions: int = 0
    participants: int = 0
    pages: int = 0  # Graph requests that returned data
    requests: int = 0  # every Graph request of this fetch, the version checks included
    resumed: int = 0
    participants_v2: bool = True

    @property
    def version(self) -> int:
        return int(self.head.get("version", 0))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["phase"] = Phase(known["phase"])
        return cls(**known)


def checkpoint_name(record_id: str) -> str:
    return f"{CHECKPOINTS}/{normalize_id(record_id)}.json"


@dataclass
class Fetched:
    """The outcome of a complete fetch."""

    head: dict[str, Any]
    blob: str
    written: bool
    bytes: int
    pages: int
    requests: int
    sessions: int
    participants: int
    resumed: int


class Paused(RetryLater):
    """The fetch stopped at a checkpoint (its time budget, or a long wait for Graph's
    per-record limit): queue it again after ``retry_after`` seconds and it continues there."""


class _Restart(Exception):
    """Start the record again from its first page (new version, stale checkpoint)."""


class RecordFetch:
    """One attempt at one record (see the module docstring)."""

    def __init__(self, ports: FetchPorts, record_id: str, deadline: float) -> None:
        self.ports = ports
        self.graph: GraphPort = ports.graph
        self.id = normalize_id(record_id)
        self.deadline = deadline
        self.limits = self.graph.record_limits(self.id)
        self.cp: Checkpoint | None = None
        self.etag: str | None = None
        self.blob: StagedPort | None = None

    # ---- pacing: Graph's per-record limits, waited out in place or by pausing

    async def _pace(self, following: bool) -> None:
        """Wait for the per-record limit in place (RECORD_PACE), or pause at a checkpoint
        when the wait is long or the time budget is spent."""
        window = self.limits.following if following else self.limits.first
        delay = window.delay()
        now = time.monotonic()
        if delay > 0:
            if not RECORD_PACE.waits_in_place(delay) or now + delay > self.deadline:
                raise await self._pause(delay, "waiting for Graph's per-record limit")
            await asyncio.sleep(delay + 0.001)
        elif now > self.deadline:
            raise await self._pause(0, "time budget spent")
        window.take()
        if self.cp is not None:
            self.cp.requests += 1

    async def _pace_page(self, url: str) -> None:
        """A sessions or participants_v2 page: the first participants_v2 page counts as a
        first page, every other page as a following one."""
        assert self.cp is not None
        await self._pace("$skiptoken=" in url or self.cp.phase is Phase.SESSIONS)

    async def _paced_get(self, url: str, following: bool, parse: Any) -> Any:
        await self._pace(following)
        return await self.graph.request("GET", url, parse=parse)

    async def _pause(self, delay: float, why: str) -> Paused:
        await self._save()
        cp = self.cp
        log.info(
            "record %s v%s paused after %d pages (%s); continuing in %.0f s",
            self.id,
            cp.version if cp else "?",
            cp.pages if cp else 0,
            why,
            delay,
        )
        return Paused(why, retry_after=delay)

    # ---- the checkpoint

    async def _load(self) -> Checkpoint | None:
        data, self.etag = await self.ports.state.load(checkpoint_name(self.id))
        if data is None:
            return None
        try:
            return Checkpoint.from_json(data)
        except (KeyError, TypeError, ValueError):
            log.warning("record %s: unreadable checkpoint, starting from page 1", self.id)
            return None

    async def _save(self) -> None:
        if self.cp is None or self.blob is None:
            return
        await self.blob.flush()
        self.cp.block_ids, self.cp.size = self.blob.block_ids, self.blob.size
        saved = await self.ports.state.save(
            checkpoint_name(self.id), self.cp.to_json(), self.etag if self.etag else ""
        )
        if saved:
            self.etag = saved
        else:
            log.info("record %s: another worker checkpointed it meanwhile", self.id)
            _, self.etag = await self.ports.state.load(checkpoint_name(self.id))

    async def _forget(self) -> None:
        await self.ports.state.delete(checkpoint_name(self.id))
        self.etag = None

    # ---- the fetch

    async def run(self) -> Fetched:
        for _ in range(MAX_RESTARTS):
            try:
                return await self._attempt()
            except _Restart:
                self.cp, self.blob = None, None
                await self._forget()
        raise GraphError(200, "VersionChanging", f"record {self.id} kept changing version")

    async def _attempt(self) -> Fetched:
        cp = await self._load()
        if cp is not None:
            cp.resumed += 1
            self.cp = cp
            self.blob = self.ports.archive.staged(cp.head, cp.block_ids, cp.size)
            if await self.blob.exists():  # another worker finished it
                await self._forget()
                return self._result(written=False)
            log.info(
                "record %s v%d: resuming at %s after %d pages",
                self.id,
                cp.version,
                cp.phase,
                cp.pages,
            )
        else:
            head = RecordHead.split(
                self.id, await self._paced_get(self.graph.record_url(self.id), False, parse_fields)
            )
            self.cp = cp = Checkpoint(
                id=self.id,
                head=head.head,
                phase=Phase.SESSIONS,
                link=head.next_link,
                pages=1,
                requests=1,
                participants_v2=self.ports.settings.participants_v2,
            )
            self.blob = self.ports.archive.staged(head.head, [], 0)
            if await self.blob.exists():
                return self._result(written=False)
            await self.blob.add(head.prefix() + b'"sessions":[')
            await self._items(head.first_sessions)
            cp.sessions = len(head.first_sessions)
        # Records of more than one page are bounded per instance (ARCHIVE_MAX_LARGE_FETCHES):
        # a burst of large meetings waits here instead of filling a 2 GB instance.
        large = cp.link is not None or cp.resumed > 0
        async with self.ports.large_fetches if large else contextlib.nullcontext():
            try:
                await self._pages()
            except Paused:
                raise
            except GraphError as exc:
                if cp.resumed and exc.status == 400:  # a next link Graph no longer accepts
                    log.warning(
                        "record %s: checkpoint link refused (%s); from page 1", self.id, exc
                    )
                    raise _Restart() from exc
                if cp.pages > 1:
                    await self._save()  # the host's retry continues from here
                raise
            return await self._commit()

    async def _items(self, items: list[Any]) -> None:
        assert self.cp is not None and self.blob is not None
        for item in items:
            await self.blob.add((b"," if self.cp.items else b"") + bytes(item))
            self.cp.items += 1

    def _next_phase(self) -> None:
        assert self.cp is not None
        if self.cp.phase is Phase.SESSIONS and self.cp.participants_v2:
            self.cp.phase, self.cp.link = Phase.PARTICIPANTS, self.graph.participants_url(self.id)
        else:
            self.cp.phase, self.cp.link = Phase.DONE, None

    async def _pages(self) -> None:
        cp, blob = self.cp, self.blob
        assert cp is not None and blob is not None
        while cp.phase is not Phase.DONE:
            if cp.link is None:
                was = cp.phase
                self._next_phase()
                if was is Phase.SESSIONS:
                    tail = b'],"participants_v2":[' if cp.participants_v2 else b"],"
                    await blob.add(tail + (b"" if cp.participants_v2 else PARTICIPANTS_UNAVAILABLE))
                    cp.items = 0
                continue
            # The checkpoint's link is the pager's continuation token.
            read = pages(self.graph, token=cp.link, pace=self._pace_page)
            async with contextlib.aclosing(read) as it:
                async for page in it:
                    cp.pages += 1
                    await self._items(page.value)
                    if cp.phase is Phase.SESSIONS:
                        cp.sessions += len(page.value)
                    else:
                        cp.participants += len(page.value)
                    cp.link = page.next_link
        await blob.add(b"]}" if cp.participants_v2 else b"}")

    async def _commit(self) -> Fetched:
        cp, blob = self.cp, self.blob
        assert cp is not None and blob is not None
        # A record read over more than one response may have changed between them (a second
        # version published between the record and its participants_v2 page, in the chaos run
        # too): ask its version again before anything becomes visible. One request more per
        # record buys the promise that blob vN never holds a page of N+1.
        if cp.pages > 1 or cp.resumed:
            data = await self._paced_get(self.graph.version_url(self.id), False, parse_fields)
            current = orjson.loads(bytes(data["version"])) if "version" in data else None
            if current != cp.version:
                log.warning(
                    "record %s changed from v%d to v%s while it was fetched; fetching it again",
                    self.id,
                    cp.version,
                    current,
                )
                raise _Restart()
        metadata = {} if cp.participants_v2 else {"participantsv2": "unavailable"}
        try:
            written = await blob.commit(metadata)
        except StaleBlocks as exc:
            log.warning("record %s: %s; fetching it again from page 1", self.id, exc)
            raise _Restart() from exc
        if cp.resumed or self.etag:
            await self._forget()
        return self._result(written)

    def _result(self, written: bool) -> Fetched:
        cp, blob = self.cp, self.blob
        assert cp is not None and blob is not None
        return Fetched(
            head=cp.head,
            blob=blob.name,
            written=written,
            bytes=blob.total if written else 0,
            pages=cp.pages,
            requests=cp.requests,
            sessions=cp.sessions,
            participants=cp.participants,
            resumed=cp.resumed,
        )


async def fetch_record(ports: FetchPorts, record_id: str) -> Fetched:
    """Fetch and archive one record within ``ARCHIVE_FETCH_BUDGET_SECONDS``, continuing a
    checkpoint if an earlier attempt left one; raises ``Paused`` to be queued again."""
    deadline = time.monotonic() + ports.settings.fetch_budget_seconds
    return await RecordFetch(ports, record_id, deadline).run()
