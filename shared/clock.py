"""The clock and Graph's date-time text: ``utcnow`` and ``parse_graph_datetime``.

Graph writes date-times as ISO 8601 in UTC with up to seven fractional digits
(learn.microsoft.com/graph/api/resources/callrecords-callrecord, ``startDateTime``:
"represented in ISO 8601 format and is always in UTC time"); offsets are accepted too, so a
date typed by a person (``2024-05-01T10:00:00+02:00``) means what it says.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (every date-time in the app is aware and UTC)."""
    return datetime.now(UTC)


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


def graph_time(dt: datetime) -> str:
    """A datetime as Graph's filter literal: ``2024-05-01T10:00:00Z`` (whole seconds, UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_days(since: datetime, until: datetime) -> list[date]:
    """Every UTC date that [since, until) touches: the archive's day folders."""
    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
