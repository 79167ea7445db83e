"""The queue worker: fetch a complete record, write it once, log one line."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson

from shared.lifecycle import run_control
from shared.messages import ControlItem, MessageError, WorkItem, parse_message
from shared.runtime import Runtime, get_runtime

log = logging.getLogger("archive")


@dataclass(frozen=True)
class Archived:
    id: str
    version: int
    blob: str
    written: bool
    pages: int
    bytes: int
    ms: float


async def archive_record(rt: Runtime, item: WorkItem) -> Archived:
    """Fetch every page of the record, then upload it if that version is not archived yet.

    Any Graph, network or storage failure raises before anything is written, so the host
    retries the message and a partial record never reaches the archive.
    """
    started = time.perf_counter()
    fetched = await rt.graph.fetch_call_record(item.id)
    data = orjson.dumps(fetched.document)
    name, written = await rt.archive.write(fetched.document, data)
    result = Archived(
        id=fetched.id,
        version=fetched.version,
        blob=name,
        written=written,
        pages=fetched.pages,
        bytes=len(data),
        ms=(time.perf_counter() - started) * 1000,
    )
    log.info(
        "%s %s v%d: %d pages, %d sessions, %d participants, %d bytes, %.0f ms -> %s",
        "archived" if written else "already archived",
        result.id,
        result.version,
        result.pages,
        fetched.sessions,
        fetched.participants,
        result.bytes,
        result.ms,
        name,
    )
    return result


async def handle_message(body: bytes, dequeue_count: int | None = None) -> None:
    """Queue trigger entry: malformed messages go to poison with a reason, not round the loop."""
    rt = await get_runtime()
    try:
        item = parse_message(body)
    except MessageError as exc:
        log.error("malformed queue message moved to poison: %s", exc)
        await rt.work.put_raw_poison(body, str(exc))
        return
    if isinstance(item, ControlItem):
        await run_control(rt, item)
        return
    await archive_record(rt, item)
