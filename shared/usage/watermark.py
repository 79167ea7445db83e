"""How far the hourly run has got, per usage log: a small JSON blob in the app's state
container in host storage (``usage/{ARCHIVE_CONTAINER}/{kind}.json``).

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

from shared.clock import parse_graph_datetime
from shared.ports import UsagePorts
from shared.usage.kinds import UsageKind

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
    """Reads and saves the per-kind watermark blobs, through the runtime's state store (the
    app's own small blobs in host storage, conditional on the ETag read)."""

    def __init__(self, ports: UsagePorts) -> None:
        self.state = ports.state
        self.prefix = f"usage/{ports.settings.archive_container}/"  # one app's state per archive

    def name(self, kind: UsageKind) -> str:
        return f"{self.prefix}{kind.value}.json"

    async def load(self, kind: UsageKind) -> Watermark:
        value, etag = await self.state.load(self.name(kind))
        if value is None:
            return Watermark(kind)
        return Watermark.from_json(kind, orjson.dumps(value), etag)

    async def save(self, mark: Watermark) -> None:
        """Write it only if nobody else did since it was read (ETag), else WatermarkConflict."""
        saved = await self.state.save(
            self.name(mark.kind), orjson.loads(mark.to_json()), mark.etag or ""
        )
        if saved is None:
            raise WatermarkConflict(
                f"the {mark.kind.label} watermark was saved by another run meanwhile"
            )
        mark.etag = saved
