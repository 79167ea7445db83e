"""Date ranges for getPstnCalls / getDirectRoutingCalls.

Both take ``fromDateTime`` (UTC, inclusive; the call's start time) and ``toDateTime``; the
getPstnCalls page says the range may not exceed 90 days. The getDirectRoutingCalls page
states no limit, so the same 90 days is assumed for both (the stricter reading).
learn.microsoft.com/graph/api/callrecords-callrecord-getpstncalls
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

MAX_RANGE = timedelta(days=90)


def graph_literal(dt: datetime) -> str:
    """A DateTimeOffset literal for the function's URL: ``2019-11-01T00:00:00Z`` (UTC with Z:
    a ``+hh:mm`` offset would need escaping in a URL path)."""
    dt = dt.astimezone(UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def date_ranges(
    since: datetime, until: datetime, step: timedelta = MAX_RANGE
) -> Iterator[tuple[datetime, datetime]]:
    """[since, until) as consecutive ranges of at most ``step`` (capped at 90 days), laid end
    to end: each range's ``to`` is the next one's ``from``. With an exclusive ``toDateTime``
    every instant is in exactly one range; with an inclusive one a row starting exactly on a
    boundary is returned by both ranges (the archive writes it once)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("date ranges need timezone-aware datetimes")
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    step = min(step, MAX_RANGE)
    start = since.astimezone(UTC)
    end = until.astimezone(UTC)
    while start < end:
        stop = min(start + step, end)
        yield start, stop
        start = stop


def function_path(function: str, since: datetime, until: datetime) -> str:
    """``communications/callRecords/getPstnCalls(fromDateTime=…,toDateTime=…)``."""
    if until - since > MAX_RANGE:
        raise ValueError(f"{function} takes at most 90 days; split the range first")
    return (
        f"communications/callRecords/{function}"
        f"(fromDateTime={graph_literal(since)},toDateTime={graph_literal(until)})"
    )
