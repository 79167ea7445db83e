"""A local copy of the tables the report reads: each day's blob fetched once, kept while its
ETag is unchanged (a rebuilt day gets a new ETag, so it is fetched again)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import ContainerClient

from shared.analytics.rebuild import table_blob


@dataclass
class FetchResult:
    days: int = 0  # days with a table in storage
    downloaded: int = 0
    cached: int = 0
    bytes: int = 0


async def fetch_tables(
    tables: ContainerClient, days: list[date], directory: Path, table: str = "streams"
) -> FetchResult:
    """Mirror ``{table}/date=D/`` of each day into ``directory`` (same layout)."""
    result = FetchResult()
    # One listing gives every day's ETag: not a properties request per day of the range.
    etags: dict[str, str] = {}
    try:
        async for blob in tables.list_blobs(name_starts_with=f"{table}/"):
            etags[blob.name] = str(blob.etag)
    except ResourceNotFoundError:
        pass  # no container yet: no day has a table
    for day in days:
        name = table_blob(table, day)
        local = directory / name
        tag = local.with_name(local.name + ".etag")
        etag = etags.get(name)
        if etag is None:
            local.unlink(missing_ok=True)  # the day has no table (any more)
            tag.unlink(missing_ok=True)
            continue
        result.days += 1
        if local.exists() and tag.exists() and tag.read_text() == etag:
            result.cached += 1
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".partial")
        stream = await tables.download_blob(
            name, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        with partial.open("wb") as out:
            async for chunk in stream.chunks():
                out.write(chunk)
        partial.replace(local)
        tag.write_text(etag)
        result.downloaded += 1
        result.bytes += local.stat().st_size
    return result
