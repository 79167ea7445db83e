"""The archive: one immutable blob per (record id, version), written only if absent."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import ContainerClient

from shared.graph import RecordStream
from shared.ids import normalize_id

BLOCK_BYTES = 4 * 1024 * 1024  # staged block size for records written page by page

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def parse_graph_datetime(value: object) -> datetime:
    """Graph's ISO 8601 (up to 7 fractional digits, Z or an offset) as an aware UTC datetime."""
    m = _ISO.match(str(value).strip()) if value else None
    if not m:
        raise ValueError(f"not an ISO 8601 date-time: {str(value)[:40]!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=UTC)
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        dt -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return dt


def blob_name(record: dict[str, Any]) -> str:
    """``{yyyy}/{MM}/{dd}/{id}/v{version}.json`` from the record's startDateTime in UTC."""
    rid = normalize_id(record.get("id"))
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"record {rid} has no integer version: {version!r}")
    start = parse_graph_datetime(record.get("startDateTime"))
    return f"{start:%Y/%m/%d}/{rid}/v{version}.json"


def record_prefix(record_id: str, start: datetime) -> str:
    """The folder holding every version of one record."""
    return f"{start.astimezone(UTC):%Y/%m/%d}/{normalize_id(record_id)}/"


def _metadata(record: dict[str, Any]) -> dict[str, str]:
    return {
        "callrecordid": normalize_id(record["id"]),
        "version": str(record["version"]),
        "startdatetime": str(record.get("startDateTime", "")),
    }


class ArchiveWriter:
    """Writes records into one container; a second write of the same version is a no-op."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    async def write(self, record: dict[str, Any], data: bytes) -> tuple[str, bool]:
        """Upload ``data`` (the record's JSON) if its blob is absent.

        Returns (blob name, True if this call wrote it). ``If-None-Match: *`` makes the check
        and the write one atomic step, so concurrent duplicates cannot overwrite each other.
        """
        name = blob_name(record)
        return name, await self.write_named(name, data, _metadata(record))

    async def write_named(self, name: str, data: bytes, metadata: dict[str, str]) -> bool:
        """Upload JSON ``data`` as blob ``name`` if it is absent; True if this call wrote it."""
        try:
            await self.container.upload_blob(
                name,
                data,
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
                metadata=metadata,
            )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    async def write_stream(self, stream: RecordStream) -> tuple[str, bool, int]:
        """Write a multi-page record page by page: staged blocks, one commit, only if absent.

        Memory stays at about one block (4 MiB) plus one page, whatever the meeting's size;
        a record that fits in one block is uploaded in one request instead. Nothing is visible
        until the commit, so a failure mid-way leaves no blob (the service discards staged
        blocks). A version already archived is detected before any further page is fetched.
        Returns (blob name, written, bytes).
        """
        head = stream.head
        name = blob_name(head)
        blob = self.container.get_blob_client(name)
        if await blob.exists():
            return name, False, 0
        prefix = uuid.uuid4().hex
        blocks: list[BlobBlock] = []
        size = 0
        buffer = bytearray(stream.prefix() + b'"sessions":[')

        async def flush() -> None:
            nonlocal buffer, size
            block_id = f"{prefix}{len(blocks):08d}"
            await blob.stage_block(block_id, bytes(buffer))
            blocks.append(BlobBlock(block_id=block_id))
            size += len(buffer)
            buffer = bytearray()

        first = True
        async for fragment in stream.session_fragments():
            if not fragment:
                continue
            if not first:
                buffer += b","
            buffer += fragment
            first = False
            if len(buffer) >= BLOCK_BYTES:
                await flush()
        buffer += b'],"participants_v2":[' + await stream.participants_task + b"]}"
        if not blocks:  # it all fit in one block: one plain upload, no staging round trips
            written = await self.write_named(name, bytes(buffer), _metadata(head))
            return name, written, len(buffer)
        await flush()
        try:
            await blob.commit_block_list(
                blocks,
                content_settings=ContentSettings(content_type="application/json"),
                metadata=_metadata(head),
                match_condition=MatchConditions.IfMissing,
            )
        except (ResourceExistsError, ResourceModifiedError):
            return name, False, size
        return name, True, size
