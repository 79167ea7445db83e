# pyarrow-stubs leave some of pyarrow's signatures partly unknown: allowed in this module only.
# pyright: reportMissingTypeStubs=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false
# pyright: reportUnknownParameterType=false
"""Analytics tables for the usage logs, and the usage report.

``pstn_calls/date=YYYY-MM-DD/part-0.parquet`` and ``direct_routing_calls/date=…`` in the
analytics container (ANALYTICS_CONTAINER, next to the archive): Parquet, Hive-partitioned by
the call's UTC start date, one typed column per documented field
(learn.microsoft.com/graph/api/resources/callrecords-pstncalllogrow and
.../callrecords-directroutinglogrow). They are derived from the archive and can be rebuilt
at any time; the archive stays the source of truth.

A day's partition is rebuilt when its row count (kept in the Parquet blob's metadata) differs
from the number of archived rows of that day: the archive is write-once and only grows, so
equal counts mean the partition is current, and a refresh lists blobs instead of reading them.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from shared.clock import parse_graph_datetime, utc_days
from shared.runtime import Runtime
from shared.usage.kinds import UsageKind

log = logging.getLogger(__name__)

READ_CONCURRENCY = 32
_NOT_SET = "0001-01-01"  # Graph's "no time" (the Direct Routing example's failureDateTime)

_TS = pa.timestamp("us", tz="UTC")
SCHEMAS: dict[UsageKind, pa.Schema] = {
    UsageKind.PSTN: pa.schema(
        [
            ("id", pa.string()),
            ("callId", pa.string()),
            ("userId", pa.string()),
            ("userPrincipalName", pa.string()),
            ("userDisplayName", pa.string()),
            ("startDateTime", _TS),
            ("endDateTime", _TS),
            ("duration", pa.int64()),
            ("charge", pa.float64()),
            ("connectionCharge", pa.float64()),
            ("currency", pa.string()),
            ("callType", pa.string()),
            ("callerNumber", pa.string()),
            ("calleeNumber", pa.string()),
            ("usageCountryCode", pa.string()),
            ("tenantCountryCode", pa.string()),
            ("destinationContext", pa.string()),
            ("destinationName", pa.string()),
            ("conferenceId", pa.string()),
            ("licenseCapability", pa.string()),
            ("inventoryType", pa.string()),
            ("operator", pa.string()),
            ("callDurationSource", pa.string()),
        ]
    ),
    UsageKind.DIRECT_ROUTING: pa.schema(
        [
            ("id", pa.string()),
            ("correlationId", pa.string()),  # the call record's id
            ("userId", pa.string()),
            ("userPrincipalName", pa.string()),
            ("userDisplayName", pa.string()),
            ("startDateTime", _TS),
            ("inviteDateTime", _TS),
            ("failureDateTime", _TS),
            ("endDateTime", _TS),
            ("duration", pa.int64()),
            ("callType", pa.string()),
            ("successfulCall", pa.bool_()),
            ("callerNumber", pa.string()),
            ("calleeNumber", pa.string()),
            ("mediaPathLocation", pa.string()),
            ("signalingLocation", pa.string()),
            ("finalSipCode", pa.int64()),
            ("callEndSubReason", pa.int64()),
            ("finalSipCodePhrase", pa.string()),
            ("trunkFullyQualifiedDomainName", pa.string()),
            ("mediaBypassEnabled", pa.bool_()),
        ]
    ),
}


def _value(kind: pa.DataType, raw: Any) -> Any:
    """One JSON value as the column's type; None where it is absent or unusable."""
    if raw is None:
        return None
    try:
        if kind == _TS:
            text = str(raw)
            return None if text.startswith(_NOT_SET) else parse_graph_datetime(text)
        if kind == pa.int64():
            return int(raw)
        if kind == pa.float64():
            return float(raw)
        if kind == pa.bool_():
            return raw if isinstance(raw, bool) else None
        return str(raw)
    except (TypeError, ValueError):
        return None


def to_table(kind: UsageKind, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (as archived) -> a typed Arrow table; keys no schema lists stay in the archive."""
    schema = SCHEMAS[kind]
    columns = {
        f.name: pa.array([_value(f.type, row.get(f.name)) for row in rows], type=f.type)
        for f in schema
    }
    return pa.table(columns, schema=schema)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def partition_name(kind: UsageKind, day: date) -> str:
    return f"{kind.table}/date={day:%Y-%m-%d}/part-0.parquet"


@dataclass
class RefreshReport:
    days: int = 0
    rebuilt: int = 0
    rows: dict[UsageKind, int] = field(default_factory=dict[UsageKind, int])


class UsageTables:
    """The analytics container's usage tables; close it when done."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.container: ContainerClient = rt.tables  # the runtime's client: it closes it

    async def _ensure(self) -> None:
        try:
            await self.container.create_container()
        except ResourceExistsError:
            pass

    async def _archived_day(self, kind: UsageKind, day: date) -> list[str]:
        prefix = f"{kind.prefix}{day:%Y/%m/%d}/"
        return [b.name async for b in self.rt.archive.container.list_blobs(name_starts_with=prefix)]

    async def _partition_rows(self, kind: UsageKind) -> dict[str, int]:
        """Each partition's row count, from one listing rather than a request per day."""
        return {
            b.name: int((b.metadata or {}).get("rows", -1))
            async for b in self.container.list_blobs(
                name_starts_with=f"{kind.table}/", include=["metadata"]
            )
        }

    async def _read_rows(self, names: list[str]) -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(READ_CONCURRENCY)
        archive = self.rt.archive.container

        async def read(name: str) -> dict[str, Any]:
            async with limit:
                data = await (await archive.download_blob(name)).readall()
            row: Any = orjson.loads(data)
            return dict[str, Any](row) if isinstance(row, dict) else {}

        return list(await asyncio.gather(*(read(n) for n in names)))

    async def refresh(
        self,
        kinds: list[UsageKind],
        since: datetime,
        until: datetime,
        progress: Callable[[UsageKind, date], None] | None = None,
    ) -> RefreshReport:
        """Rebuild every partition in the range whose row count lags the archive."""
        await self._ensure()
        report = RefreshReport()
        for kind in kinds:
            report.rows[kind] = 0
            built = await self._partition_rows(kind)
            for day in utc_days(since, until):
                report.days += 1
                names = await self._archived_day(kind, day)
                report.rows[kind] += len(names)
                if progress:
                    progress(kind, day)
                if not names or built.get(partition_name(kind, day)) == len(names):
                    continue
                table = to_table(kind, await self._read_rows(names))
                await self.container.upload_blob(
                    partition_name(kind, day),
                    parquet_bytes(table),
                    overwrite=True,  # derived data: a rebuild replaces it
                    content_settings=ContentSettings(content_type="application/vnd.apache.parquet"),
                    metadata={"rows": str(len(names))},
                )
                report.rebuilt += 1
        return report

    async def download(
        self, kinds: list[UsageKind], since: datetime, until: datetime, dest: Path
    ) -> dict[UsageKind, Path]:
        """The range's partitions as local Hive-partitioned folders (dest/table/date=…/);
        a table with no partition in the range gets an empty file with its schema."""
        folders: dict[UsageKind, Path] = {}
        for kind in kinds:
            folder = dest / kind.table
            found = 0
            for day in utc_days(since, until):
                name = partition_name(kind, day)
                try:
                    data = await (await self.container.download_blob(name)).readall()
                except ResourceNotFoundError:
                    continue
                path = dest / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                found += 1
            if not found:
                empty = folder / f"date={since:%Y-%m-%d}" / "part-0.parquet"
                empty.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(SCHEMAS[kind].empty_table(), empty)
            folders[kind] = folder
        return folders


# ------------------------------------------------------------------------------ the report

_PSTN_BY_USER_DESTINATION = """
SELECT coalesce(userPrincipalName, '(none)') AS "user",
       coalesce(destinationName, '(none)') AS destination,
       coalesce(currency, '') AS currency,
       count(*) AS calls,
       round(sum(coalesce(duration, 0)) / 60.0, 2) AS minutes,
       round(sum(coalesce(charge, 0)), 2) AS charges,
       round(sum(coalesce(connectionCharge, 0)), 2) AS connection_charges
FROM pstn WHERE startDateTime >= $since AND startDateTime < $until
GROUP BY ALL ORDER BY charges DESC, minutes DESC, "user", destination
"""

_PSTN_TOTALS = """
SELECT coalesce(currency, '') AS currency, count(*) AS calls,
       round(sum(coalesce(duration, 0)) / 60.0, 2) AS minutes,
       round(sum(coalesce(charge, 0)), 2) AS charges,
       round(sum(coalesce(connectionCharge, 0)), 2) AS connection_charges
FROM pstn WHERE startDateTime >= $since AND startDateTime < $until
GROUP BY ALL ORDER BY currency
"""

_DR_TOTALS = """
SELECT count(*) AS calls,
       count(*) FILTER (WHERE NOT coalesce(successfulCall, false)) AS failed,
       coalesce(round(sum(duration) / 60.0, 2), 0) AS minutes
FROM dr WHERE startDateTime >= $since AND startDateTime < $until
"""

_DR_BY_USER = """
SELECT coalesce(userPrincipalName, '(none)') AS "user",
       count(*) AS calls,
       count(*) FILTER (WHERE NOT coalesce(successfulCall, false)) AS failed,
       round(sum(coalesce(duration, 0)) / 60.0, 2) AS minutes
FROM dr WHERE startDateTime >= $since AND startDateTime < $until
GROUP BY ALL ORDER BY minutes DESC, "user"
"""

_DR_FAILURES = """
SELECT finalSipCode AS sip_code,
       coalesce(any_value(finalSipCodePhrase), '') AS phrase,
       count(*) AS calls
FROM dr WHERE startDateTime >= $since AND startDateTime < $until
  AND NOT coalesce(successfulCall, false)
GROUP BY finalSipCode ORDER BY calls DESC, sip_code
"""


def _records(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def report(folders: dict[UsageKind, Path], since: datetime, until: datetime) -> dict[str, Any]:
    """Minutes and charges by user and destination (PSTN), minutes and failures by user and
    failed calls by SIP code (Direct Routing), for calls that started in [since, until)."""
    import duckdb

    con = duckdb.connect()
    try:
        for view, kind in (("pstn", UsageKind.PSTN), ("dr", UsageKind.DIRECT_ROUTING)):
            glob = str(folders[kind] / "*" / "*.parquet")
            con.read_parquet(glob, hive_partitioning=True).create_view(view)
        params = {"since": since.astimezone(UTC), "until": until.astimezone(UTC)}
        pstn_totals = _records(con.execute(_PSTN_TOTALS, params))
        pstn = _records(con.execute(_PSTN_BY_USER_DESTINATION, params))
        (dr_totals,) = _records(con.execute(_DR_TOTALS, params))
        by_user = _records(con.execute(_DR_BY_USER, params))
        failures = _records(con.execute(_DR_FAILURES, params))
    finally:
        con.close()
    return {
        "since": since.astimezone(UTC).isoformat(),
        "until": until.astimezone(UTC).isoformat(),
        "pstn": {
            "calls": sum(r["calls"] for r in pstn_totals),
            "minutes": round(sum(r["minutes"] for r in pstn_totals), 2),
            "by_currency": pstn_totals,
            "by_user_destination": pstn,
        },
        "direct_routing": {
            **dr_totals,
            "by_user": by_user,
            "failures_by_sip_code": failures,
        },
    }
