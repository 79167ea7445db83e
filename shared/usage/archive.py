"""Usage rows in the archive container: ``pstn/{yyyy}/{MM}/{dd}/{id}.json`` and
``directrouting/…``, dated by the row's UTC ``startDateTime``, one blob per row, written only
if absent (the same If-None-Match: * upload as call records, so WORM policies hold)."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import msgspec

from shared.clock import parse_graph_datetime
from shared.ids import is_guid
from shared.ports import ArchivePort
from shared.usage.kinds import UsageKind

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _RowHead(msgspec.Struct):
    """The two fields the blob name needs; every other key stays in the raw bytes."""

    id: str | None = None
    startDateTime: str | None = None  # Graph's spelling


_HEAD = msgspec.json.Decoder(_RowHead)


@dataclass(frozen=True)
class UsageRow:
    """One row as Graph returned it (``data``, byte for byte) and what names its blob.

    A row without an id or a readable startDateTime (the docs promise both) is still kept,
    under ``{kind}/_unparsed/sha256-{hash of its bytes}.json``: nothing Graph sends is dropped.
    """

    kind: UsageKind
    id: str | None
    start: datetime | None
    data: bytes

    @cached_property  # asked for by the index, the upload and the metadata
    def blob_name(self) -> str:
        if self.id is None or self.start is None:
            digest = hashlib.sha256(self.data).hexdigest()
            return f"{self.kind.prefix}_unparsed/sha256-{digest}.json"
        return f"{self.kind.prefix}{self.start:%Y/%m/%d}/{blob_id(self.id)}.json"

    @property
    def metadata(self) -> dict[str, str]:
        meta = {"usagekind": self.kind.value}
        if self.id is not None:
            meta["rowid"] = blob_id(self.id)
        if self.start is not None:
            meta["startdatetime"] = self.start.isoformat()
        return meta


def blob_id(row_id: str) -> str:
    """The row id as a blob name segment: GUIDs (what the docs promise) lowercased, other
    plain ids as they are, anything else (slashes, spaces, non-ASCII) as a stable hash."""
    if is_guid(row_id):
        return row_id.lower()
    if _SAFE_ID.match(row_id) and ".." not in row_id:
        return row_id
    return "sha256-" + hashlib.sha256(row_id.encode()).hexdigest()


def parse_row(kind: UsageKind, raw: bytes) -> UsageRow:
    """A raw row from a page, with its id and UTC start when it has them."""
    try:
        head = _HEAD.decode(raw)
    except msgspec.DecodeError:
        log.warning("%s row is not an object with string id/startDateTime: kept unparsed", kind)
        return UsageRow(kind, None, None, bytes(raw))
    start: datetime | None = None
    if head.startDateTime:
        try:
            start = parse_graph_datetime(head.startDateTime)
        except ValueError:
            start = None
    if not head.id or start is None:
        log.warning("%s row without id or startDateTime: kept unparsed", kind)
    return UsageRow(kind, head.id or None, start, bytes(raw))


class ArchivedIndex:
    """Which rows are archived already, one listing per day folder, read when first needed.

    The hourly run re-reads three days of overlap every hour (a week once a day); a conditional PUT per known row
    would cost a write transaction each (a 10,000-row day: 240,000 a day per log), while one
    listing covers 5,000 names. A row not in the listing is still written with
    If-None-Match: *, so a row written meanwhile by someone else is never overwritten.
    At most ``keep`` day folders are held (pages come in start order), so memory stays at a
    few days of names however long the range.
    """

    def __init__(self, archive: ArchivePort, keep: int = 4) -> None:
        self.archive = archive
        self.keep = keep
        self.folders: dict[str, set[str]] = {}
        self.listings = 0

    async def contains(self, row: UsageRow) -> bool:
        folder = row.blob_name.rsplit("/", 1)[0] + "/"
        names = self.folders.get(folder)
        if names is None:
            names = {name async for name in self.archive.names(folder)}
            self.listings += 1
            if len(self.folders) >= self.keep:
                del self.folders[next(iter(self.folders))]  # the oldest read
            self.folders[folder] = names
        return row.blob_name in names

    def add(self, row: UsageRow) -> None:
        folder = row.blob_name.rsplit("/", 1)[0] + "/"
        if folder in self.folders:
            self.folders[folder].add(row.blob_name)


async def write_row(archive: ArchivePort, row: UsageRow) -> bool:
    """True if this call wrote the blob, False if it was already archived."""
    return await archive.write_named(row.blob_name, row.data, row.metadata)
