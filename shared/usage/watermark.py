"""How far the hourly run has got, per usage log: a small JSON blob in host storage.

Not in the archive container: that one may carry a time-based retention (WORM) policy, under
which a blob cannot be overwritten, and this state changes every hour. The host storage
account is the app's own (the Functions host keeps its timers and leases there), and the
identity already holds Storage Blob Data Owner on it, so no new role is needed.

The blob also keeps a per-hour count of rows written (the last 48 hours), so status can say
"rows archived in the last 24 h" without listing the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from shared.blobstore import parse_graph_datetime
from shared.runtime import Runtime
from shared.storage import container_client
from shared.usage.kinds import UsageKind

STATE_CONTAINER = "usage-watermarks"
KEEP_HOURS = 48


class WatermarkConflict(RuntimeError):
    """Another run saved the watermark first (two runs at once): this one stops."""


def _hour(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H")


@dataclass
class Watermark:
    """``until``: every row that started before it has been written (None: never ran)."""

    kind: UsageKind
    until: datetime | None = None
    updated: datetime | None = None
    written_by_hour: dict[str, int] = field(default_factory=dict[str, int])
    etag: str | None = None

    def count(self, written: int, now: datetime) -> None:
        if written:
            key = _hour(now)
            self.written_by_hour[key] = self.written_by_hour.get(key, 0) + written
        oldest = _hour(now - timedelta(hours=KEEP_HOURS))
        self.written_by_hour = {k: v for k, v in self.written_by_hour.items() if k >= oldest}

    def written_since(self, since: datetime) -> int:
        """Rows written from the hour that holds ``since`` on (hour granularity)."""
        first = _hour(since)
        return sum(v for k, v in self.written_by_hour.items() if k >= first)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "kind": self.kind.value,
            "until": self.until.isoformat() if self.until else None,
            "updated": self.updated.isoformat() if self.updated else None,
            "writtenByHour": self.written_by_hour,
        }
        return orjson.dumps(body)

    @classmethod
    def from_json(cls, kind: UsageKind, data: bytes, etag: str | None) -> Watermark:
        body: dict[str, Any] = orjson.loads(data)
        until = body.get("until")
        updated = body.get("updated")
        counts: dict[str, Any] = body.get("writtenByHour") or {}
        return cls(
            kind=kind,
            until=parse_graph_datetime(until) if until else None,
            updated=parse_graph_datetime(updated) if updated else None,
            written_by_hour={str(k): int(v) for k, v in counts.items()},
            etag=etag,
        )


class WatermarkStore:
    """Reads and saves the per-kind watermark blobs; close it when done."""

    def __init__(self, rt: Runtime) -> None:
        self.prefix = f"{rt.settings.archive_container}/"  # one app's state per archive
        self.container: ContainerClient = container_client(
            rt.settings.host_storage, STATE_CONTAINER, rt.credential
        )
        self._ensured = False

    def name(self, kind: UsageKind) -> str:
        return f"{self.prefix}{kind.value}.json"

    async def load(self, kind: UsageKind) -> Watermark:
        try:
            blob = await self.container.download_blob(self.name(kind))
            data = await blob.readall()
        except ResourceNotFoundError:
            return Watermark(kind)
        return Watermark.from_json(kind, data, blob.properties.etag)

    async def save(self, mark: Watermark) -> None:
        """Write it only if nobody else did since it was read (ETag), else WatermarkConflict."""
        if not self._ensured:
            try:
                await self.container.create_container()
            except ResourceExistsError:
                pass
            self._ensured = True
        blob = self.container.get_blob_client(self.name(mark.kind))
        condition: dict[str, Any] = (
            {"etag": mark.etag, "match_condition": MatchConditions.IfNotModified}
            if mark.etag
            else {"match_condition": MatchConditions.IfMissing}
        )
        try:
            result = await blob.upload_blob(
                mark.to_json(),
                overwrite=True,
                content_settings=ContentSettings(content_type="application/json"),
                **condition,
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise WatermarkConflict(
                f"the {mark.kind.label} watermark was saved by another run meanwhile"
            ) from exc
        mark.etag = str(result.get("etag") or "") or None

    async def close(self) -> None:
        await self.container.close()
