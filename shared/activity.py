"""What was archived when, counted cheaply: one append blob per hour, one line per new blob.

Health needs "how many records were archived in the last 24 h, and the last one" on every
call; listing a day's archive folders for that would cost a request per 5,000 blobs. Instead
the archiver appends one fixed-width line (the blob name, padded) to ``archived/yyyy/MM/dd/HH``
in the host storage account, and health reads 25 blob sizes (one HEAD each) plus the newest
line (one ranged GET).

Many instances write at once, so the log is an append blob: each Append Block lands whole
and in order, with no read-modify-write to race on (learn.microsoft.com/rest/api/
storageservices/append-block); the hour's blob is created with If-None-Match: * so two first
writers cannot overwrite each other. An append blob holds at most 50,000 blocks: about 12x
the hourly volume of a 100,000-calls-a-day tenant; past that the count stops growing for the
hour and says so in the log. The log is advisory: a failed append never fails an archived
record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, ContainerClient

from shared.clock import utcnow

log = logging.getLogger(__name__)

LINE = 96  # bytes per archived blob: its name (at most 73 characters) padded, and "\n"
PREFIX = "archived/"


@dataclass(frozen=True)
class Activity:
    archived: int  # new blobs written in the period
    last_blob: str | None
    last_at: datetime | None


def hour_blob(at: datetime) -> str:
    return f"{PREFIX}{at:%Y/%m/%d/%H}"


def line(blob_name: str) -> bytes:
    return blob_name.encode()[: LINE - 1].ljust(LINE - 1) + b"\n"


class ActivityLog:
    """Append-only per-hour counts of archived blobs, in a container of their own."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    async def archived(self, blob_name: str, at: datetime | None = None) -> None:
        """Count one new archive blob (never raises: the record is archived either way)."""
        blob = self.container.get_blob_client(hour_blob(at or utcnow()))
        try:
            try:
                await blob.append_block(line(blob_name))
            except ResourceNotFoundError:
                await self._create(blob)
                await blob.append_block(line(blob_name))
        except AzureError as exc:
            log.warning("could not count %s in the activity log: %s", blob_name, exc)

    async def _create(self, blob: BlobClient) -> None:
        try:
            await blob.create_append_blob(match_condition=MatchConditions.IfMissing)
        except ResourceExistsError:
            return  # another writer created it first: append to theirs
        except ResourceNotFoundError:  # no container yet (first record ever)
            try:
                await self.container.create_container()
            except ResourceExistsError:
                pass
            try:
                await blob.create_append_blob(match_condition=MatchConditions.IfMissing)
            except ResourceExistsError:
                pass

    async def recent(self, now: datetime | None = None, hours: int = 24) -> Activity:
        """New blobs written in the last ``hours`` (whole hours, the current one included),
        and the newest of them; AzureError if the log cannot be read."""
        now = now or utcnow()
        names = [hour_blob(now - timedelta(hours=h)) for h in range(hours + 1)]
        sizes = await asyncio.gather(*(self._size(n) for n in names))
        total = sum(size for size, _ in sizes) // LINE
        for name, (size, modified) in zip(names, sizes, strict=True):
            if size >= LINE:
                stream = await self.container.download_blob(name, offset=size - LINE, length=LINE)
                last = (await stream.readall()).decode(errors="replace").strip()
                return Activity(total, last or None, modified)
        return Activity(total, None, None)

    async def _size(self, name: str) -> tuple[int, datetime | None]:
        try:
            props = await self.container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return 0, None
        return int(props.size or 0), props.last_modified
