"""Rebuild the analysis tables of a UTC day from the archive's latest versions.

A day's tables are a pure function of the archive's blobs under ``yyyy/MM/dd/`` (the day the
call started, which is also the partition date): for each record, the blob with the highest
``v{version}`` is read and flattened (tables.py), and each table is written as ONE Parquet blob,
``{table}/date=YYYY-MM-DD/part-0.parquet``, replacing the previous one. Rebuilding a day is
therefore idempotent, and a reader never sees half a day (a block blob becomes visible whole,
on commit). Rows are appended to the Parquet files in batches of ROW_BATCH on local temporary
files, so memory stays at one batch plus the few records being read, however busy the day.

Which days changed: the archive is write-once (a blob is never modified or, within its
retention, deleted), so a day's content is identified by its blob count and its newest blob's
last-modified time. The ``calls`` blob of each day carries, as metadata, the fingerprint of the
archive it was built from (with the rules and table version). The timer lists the ``calls/``
blobs once (with metadata) and each recent day folder of the archive once, and rebuilds only
the days whose fingerprint differs: no state blob to keep in step, and a run cut short by the
function timeout simply resumes with the days still different on the next run. The calls blob
is written last, so its fingerprint is only there once the day's other tables are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient

from shared.analytics.rules import DEFAULT_RULES, RULE_SETS, RuleSet
from shared.analytics.tables import SCHEMAS, TABLES_VERSION, RecordRows, Row, flatten
from shared.clock import utc_days
from shared.hostconfig import run_budget

log = logging.getLogger(__name__)

ROW_BATCH = 10_000  # rows buffered per table (as columns) before they go to the Parquet file
# Archive blobs read at once: up to DOWNLOADS, and up to DOWNLOAD_BYTES between them (the sizes
# come with the listing), so a day of 50 MB meetings cannot take gigabytes at once.
DOWNLOADS = 32
DOWNLOAD_BYTES = 64 * 1024 * 1024
# The timer looks this far back: Graph keeps records 30 days, so nothing older can still be
# archived by the app (older history: `cli.py tabulate --since ...`).
TIMER_DAYS = 32
PARQUET_BLOB = "part-0.parquet"

_VERSION_BLOB = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/([^/]+)/v(\d+)\.json$")


def table_blob(table: str, day: date) -> str:
    return f"{table}/date={day:%Y-%m-%d}/{PARQUET_BLOB}"


@dataclass(frozen=True)
class Fingerprint:
    """What a day's archive held when its tables were built."""

    blobs: int
    newest: str  # last-modified of the newest blob, ISO 8601
    rules: str
    version: str = TABLES_VERSION

    def metadata(self) -> dict[str, str]:
        return {
            "archiveblobs": str(self.blobs),
            "archivenewest": self.newest,
            "rules": self.rules,
            "tablesversion": self.version,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str] | None) -> Fingerprint | None:
        meta = meta or {}
        try:
            return cls(
                int(meta["archiveblobs"]),
                meta["archivenewest"],
                meta["rules"],
                meta["tablesversion"],
            )
        except (KeyError, ValueError):
            return None


@dataclass
class DayListing:
    """The archive's blobs of one day: the latest version of each record, and the fingerprint."""

    day: date
    latest: dict[str, tuple[int, str, int]] = field(
        default_factory=dict[str, tuple[int, str, int]]
    )  # id -> version, blob, size
    blobs: int = 0
    newest: datetime | None = None

    def fingerprint(self, rules: RuleSet) -> Fingerprint:
        newest = self.newest.astimezone(UTC).isoformat() if self.newest else ""
        return Fingerprint(self.blobs, newest, rules.name.value)


@dataclass
class DayResult:
    day: date
    records: int = 0
    calls: int = 0
    streams: int = 0
    segments: int = 0
    participants: int = 0
    skipped: int = 0  # blobs not read: gone, in the Archive tier, not a record (logged, not fatal)
    bytes: dict[str, int] = field(default_factory=dict[str, int])  # table -> Parquet bytes
    json_bytes: int = 0


@dataclass
class Progress:
    """Where a run is; passed to the caller's callback as it goes."""

    days: int = 0
    days_done: int = 0
    records: int = 0  # records to read in the listed days
    records_done: int = 0
    results: list[DayResult] = field(default_factory=list[DayResult])

    @property
    def fraction(self) -> float:
        if self.records:
            return min(1.0, self.records_done / self.records)
        return 1.0 if self.days and self.days_done >= self.days else 0.0


ProgressCallback = Callable[[Progress], None]


async def list_day(archive: ContainerClient, day: date) -> DayListing:
    """One listing of the day's folder: every record's latest version and the fingerprint."""
    listing = DayListing(day)
    async for blob in archive.list_blobs(name_starts_with=f"{day:%Y/%m/%d}/"):
        m = _VERSION_BLOB.match(blob.name)
        if not m:
            continue
        listing.blobs += 1
        modified: datetime | None = blob.last_modified
        if modified and (listing.newest is None or modified > listing.newest):
            listing.newest = modified
        rid, version = m.group(4).lower(), int(m.group(5))
        if rid not in listing.latest or version > listing.latest[rid][0]:
            listing.latest[rid] = (version, blob.name, int(blob.size or 0))
    return listing


class DayWriter:
    """Appends record rows to one local Parquet file per table, in batches of ROW_BATCH rows
    held as columns (a list per column costs a fraction of a dict per row)."""

    def __init__(self, directory: Path) -> None:
        self.paths = {name: directory / f"{name}.parquet" for name in SCHEMAS}
        self.writers = {
            name: pq.ParquetWriter(str(path), SCHEMAS[name], compression="snappy")
            for name, path in self.paths.items()
        }
        self.columns: dict[str, dict[str, list[Any]]] = {
            name: {col: [] for col in schema.names} for name, schema in SCHEMAS.items()
        }
        self.pending: dict[str, int] = dict.fromkeys(SCHEMAS, 0)
        self.counts: dict[str, int] = dict.fromkeys(SCHEMAS, 0)

    def add(self, rows: RecordRows) -> None:
        for name, columns in self.columns.items():
            new: list[Row] = rows.table(name)
            for col, values in columns.items():
                values.extend(row.get(col) for row in new)
            self.pending[name] += len(new)
            self.counts[name] += len(new)
            if self.pending[name] >= ROW_BATCH:
                self._flush(name)

    def _flush(self, name: str) -> None:
        if self.pending[name]:
            columns = self.columns[name]
            # the stubs leave from_pydict's mapping type open; the schema fixes every column
            table = pa.Table.from_pydict(columns, schema=SCHEMAS[name])  # pyright: ignore[reportUnknownMemberType]
            self.writers[name].write_table(table)
            for values in columns.values():
                values.clear()
            self.pending[name] = 0

    def close(self) -> dict[str, Path]:
        for name, writer in self.writers.items():
            self._flush(name)
            writer.close()
        return self.paths


async def _read_records(
    archive: ContainerClient, listing: DayListing, on_record: Callable[[bytes | None], None]
) -> None:
    """Download every latest-version blob of the day in id order, a batch at a time (at most
    DOWNLOADS blobs and DOWNLOAD_BYTES, at least one blob), the next batch while this one is
    consumed: memory is two batches of records, whatever the day holds."""
    batches: list[list[str]] = []
    batch_bytes = 0
    for rid in sorted(listing.latest):
        _, name, size = listing.latest[rid]
        if not batches or len(batches[-1]) >= DOWNLOADS or batch_bytes + size > DOWNLOAD_BYTES:
            batches.append([])
            batch_bytes = 0
        batches[-1].append(name)
        batch_bytes += size

    async def fetch(name: str) -> bytes | None:
        try:
            stream = await archive.download_blob(name)
            return await stream.readall()
        except ResourceNotFoundError:  # removed by a lifecycle rule since the listing
            log.warning("archive blob %s vanished during the build; skipped", name)
            return None
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) != "BlobArchived":
                raise
            # ARCHIVE_ARCHIVE_AFTER_DAYS moved it to the Archive tier: unreadable until rehydrated
            log.warning("archive blob %s is in the Archive tier (rehydrate it to include it)", name)
            return None

    def start(batch: list[str]) -> list[asyncio.Future[bytes | None]]:
        return [asyncio.ensure_future(fetch(name)) for name in batch]

    ahead = start(batches[0]) if batches else []
    current: list[asyncio.Future[bytes | None]] = []
    try:
        for n in range(len(batches)):
            current = ahead
            ahead = start(batches[n + 1]) if n + 1 < len(batches) else []
            for task in current:
                on_record(await task)
    finally:  # a failure (storage down) leaves no download running behind it
        for task in [*current, *ahead]:
            task.cancel()


async def ensure_container(tables: ContainerClient) -> None:
    try:
        await tables.create_container()
    except ResourceExistsError:
        pass


async def build_day(
    archive: ContainerClient,
    tables: ContainerClient,
    listing: DayListing,
    rules: RuleSet | None = None,
    on_record: Callable[[], None] | None = None,
) -> DayResult:
    """Write the day's tables from its listing (latest versions only)."""
    rules = rules or RULE_SETS[DEFAULT_RULES]
    result = DayResult(listing.day)
    fingerprint = listing.fingerprint(rules)
    if not listing.latest:
        for name in SCHEMAS:  # nothing archived that day (any more): no stale tables either
            try:
                await tables.delete_blob(table_blob(name, listing.day))
            except ResourceNotFoundError:
                pass
        return result
    with tempfile.TemporaryDirectory(prefix="callrecord-tables-") as tmp:
        writer = DayWriter(Path(tmp))
        try:

            def take(data: bytes | None) -> None:
                if data is None:
                    result.skipped += 1
                else:
                    result.json_bytes += len(data)
                    try:
                        record: Any = orjson.loads(data)
                        writer.add(flatten(record, rules))
                        result.records += 1
                    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
                        result.skipped += 1
                        log.warning("a %s record could not be tabulated: %s", listing.day, exc)
                if on_record:
                    on_record()

            await _read_records(archive, listing, take)
        finally:
            paths = writer.close()
        result.calls = writer.counts["calls"]
        result.streams = writer.counts["streams"]
        result.segments = writer.counts["segments"]
        result.participants = writer.counts["participants"]
        # calls last: its metadata (the fingerprint) says the day is complete
        for name in (*(n for n in SCHEMAS if n != "calls"), "calls"):
            path = paths[name]
            result.bytes[name] = path.stat().st_size
            with path.open("rb") as data:
                await tables.upload_blob(
                    table_blob(name, listing.day),
                    data,
                    overwrite=True,
                    length=result.bytes[name],
                    content_settings=ContentSettings(content_type="application/vnd.apache.parquet"),
                    metadata={**fingerprint.metadata(), "rows": str(writer.counts[name])},
                )
    return result


async def built_fingerprints(tables: ContainerClient) -> dict[date, Fingerprint]:
    """The fingerprint each day's tables were built from (one listing of ``calls/``)."""
    found: dict[date, Fingerprint] = {}
    try:
        async for blob in tables.list_blobs(name_starts_with="calls/date=", include=["metadata"]):
            m = re.match(r"^calls/date=(\d{4}-\d{2}-\d{2})/", blob.name)
            fp = Fingerprint.from_metadata(blob.metadata)
            if m and fp:
                found[date.fromisoformat(m.group(1))] = fp
    except ResourceNotFoundError:  # the container does not exist yet: nothing built
        pass
    return found


async def tabulate(
    archive: ContainerClient,
    tables: ContainerClient,
    days: list[date],
    only_changed: bool = False,
    rules: RuleSet | None = None,
    progress: ProgressCallback | None = None,
    deadline: float | None = None,
) -> Progress:
    """Rebuild the given days (or, ``only_changed``, those whose archive changed since their
    tables were built). Days are listed first, so progress counts records. Past ``deadline``
    (time.monotonic()) no new day is started: the timer's next run finds the rest still
    changed and builds them; nor one that, at this run's pace so far, would end past it with
    a third to spare (a day of 100,000 calls is minutes of a small instance's CPU, and a
    function past functionTimeout is stopped with its worker)."""
    rules = rules or RULE_SETS[DEFAULT_RULES]
    await ensure_container(tables)
    built = await built_fingerprints(tables) if only_changed else {}
    listings: list[DayListing] = []
    for day in days:
        listing = await list_day(archive, day)
        if only_changed:
            previous = built.get(day)
            if previous == listing.fingerprint(rules) or (previous is None and not listing.blobs):
                continue
        listings.append(listing)
    state = Progress(days=len(listings), records=sum(len(x.latest) for x in listings))
    if progress:
        progress(state)
    started = time.monotonic()
    for listing in listings:
        if deadline is not None and not _fits(listing, state, started, deadline):
            log.warning(
                "tables: time budget spent, %d day(s) left for the next run",
                len(listings) - state.days_done,
            )
            break

        def one_more() -> None:
            state.records_done += 1
            if progress:
                progress(state)

        result = await build_day(archive, tables, listing, rules, one_more)
        state.results.append(result)
        state.days_done += 1
        log.info(
            "tables for %s: %d records, %d streams (%d unreadable)",
            listing.day,
            result.records,
            result.streams,
            result.skipped,
        )
        if progress:
            progress(state)
    return state


def _fits(listing: DayListing, state: Progress, started: float, deadline: float) -> bool:
    now = time.monotonic()
    if now > deadline:
        return False
    if not state.records_done:
        return True  # no pace measured yet: the first day is tried
    pace = (now - started) / state.records_done
    return now + 1.5 * pace * len(listing.latest) <= deadline


async def rebuild_changed_days(
    archive: ContainerClient, tables: ContainerClient, now: datetime | None = None
) -> Progress:
    """The timer's job: rebuild every day of the last TIMER_DAYS whose archive changed (the
    records in ``archive``, the Parquet files in ``tables``), newest first: the days reports
    read most are built first when the budget does not reach them all."""
    now = now or datetime.now(UTC)
    days = utc_days(now - timedelta(days=TIMER_DAYS), now)[::-1]
    # Within host.json's functionTimeout, less a margin (hostconfig.run_budget).
    deadline = time.monotonic() + run_budget().total_seconds()
    state = await tabulate(archive, tables, days, only_changed=True, deadline=deadline)
    log.info(
        "analytics tables: %d of the last %d days rebuilt (%d records)",
        state.days_done,
        len(days),
        state.records_done,
    )
    return state
