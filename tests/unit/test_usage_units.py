"""Plain-value parts of the usage logs: 90-day windows, URL literals, blob names, tables."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from callrecords.usage.tables import to_table
from shared.clock import utc_days
from shared.usage.archive import blob_id, parse_row
from shared.usage.kinds import UsageKind, kinds_from_text
from shared.usage.ranges import MAX_RANGE, date_ranges, function_path, graph_literal
from shared.usage.watermark import Watermark

T0 = datetime(2026, 1, 1, 6, 30, tzinfo=UTC)


def test_a_range_over_90_days_is_split_into_contiguous_windows() -> None:
    until = T0 + timedelta(days=200, hours=5)
    parts = list(date_ranges(T0, until))
    assert [end - start for start, end in parts] == [
        MAX_RANGE,
        MAX_RANGE,
        timedelta(days=20, hours=5),
    ]
    assert parts[0][0] == T0 and parts[-1][1] == until
    for (_, end), (start, _) in itertools.pairwise(parts):
        assert end == start  # end to end: nothing between two windows, nothing skipped


def test_windows_edges() -> None:
    assert list(date_ranges(T0, T0)) == []
    assert list(date_ranges(T0, T0 + MAX_RANGE)) == [(T0, T0 + MAX_RANGE)]  # exactly 90: one
    assert len(list(date_ranges(T0, T0 + MAX_RANGE + timedelta(microseconds=1)))) == 2
    days = list(date_ranges(T0, T0 + timedelta(days=2, hours=1), step=timedelta(days=1)))
    assert [e - s for s, e in days] == [timedelta(days=1), timedelta(days=1), timedelta(hours=1)]
    # A step over 90 days is capped: Graph refuses longer ranges.
    assert len(list(date_ranges(T0, T0 + timedelta(days=180), step=timedelta(days=365)))) == 2
    with pytest.raises(ValueError, match="timezone-aware"):
        list(date_ranges(datetime(2026, 1, 1), T0))


def test_function_url_syntax() -> None:
    path = function_path("getPstnCalls", T0, T0 + timedelta(days=1))
    assert path == (
        "communications/callRecords/getPstnCalls"
        "(fromDateTime=2026-01-01T06:30:00Z,toDateTime=2026-01-02T06:30:00Z)"
    )
    offset = datetime(2026, 1, 1, 8, 30, 0, 250000, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    assert graph_literal(offset) == "2026-01-01T08:30:00.250000Z"  # UTC, Z, no '+' in a URL
    with pytest.raises(ValueError, match="at most 90 days"):
        function_path("getDirectRoutingCalls", T0, T0 + timedelta(days=91))


def test_row_names_and_ids() -> None:
    row = parse_row(
        UsageKind.DIRECT_ROUTING,
        b'{"id":"9E8BBA57-DC14-533A-A7DD-F0DA6575EED1","startDateTime":"2019-11-01T23:59:59.9Z",'
        b'"newKey":{"kept":true}}',
    )
    assert row.blob_name == "directrouting/2019/11/01/9e8bba57-dc14-533a-a7dd-f0da6575eed1.json"
    assert row.metadata["usagekind"] == "directrouting"
    assert b'"newKey":{"kept":true}' in row.data  # the bytes as Graph sent them
    # An offset start is dated by its UTC day.
    late = parse_row(UsageKind.PSTN, b'{"id":"a1","startDateTime":"2019-11-01T23:30:00-02:00"}')
    assert late.blob_name == "pstn/2019/11/02/a1.json"
    # Ids that are not safe path segments become a stable hash; nothing is dropped.
    assert blob_id("../../etc") == blob_id("../../etc") != "../../etc"
    assert blob_id("../../etc").startswith("sha256-")
    odd = parse_row(UsageKind.PSTN, b'{"callId":"x","startDateTime":null}')
    assert odd.blob_name.startswith("pstn/_unparsed/sha256-")
    assert parse_row(UsageKind.PSTN, b"[1,2]").blob_name.startswith("pstn/_unparsed/")


def test_kinds() -> None:
    assert kinds_from_text("all") == [UsageKind.PSTN, UsageKind.DIRECT_ROUTING]
    assert UsageKind.PSTN.function == "getPstnCalls" and UsageKind.PSTN.end_inclusive
    assert UsageKind.DIRECT_ROUTING.function == "getDirectRoutingCalls"
    assert not UsageKind.DIRECT_ROUTING.end_inclusive
    assert UsageKind.DIRECT_ROUTING.table == "direct_routing_calls"


def test_watermark_hourly_counter() -> None:
    mark = Watermark(UsageKind.PSTN)
    mark.count(5, T0)
    mark.count(7, T0 + timedelta(hours=1))
    mark.count(0, T0 + timedelta(hours=30))
    assert mark.written_since(T0 + timedelta(hours=1)) == 7
    assert mark.written_since(T0 - timedelta(hours=1)) == 12
    mark.count(1, T0 + timedelta(hours=49, minutes=30))  # older than 48 h: dropped
    assert mark.written_by_hour == {"2026-01-03T08": 1}
    again = Watermark.from_json(UsageKind.PSTN, mark.to_json(), None)
    assert again.written_by_hour == mark.written_by_hour and again.until is None


def test_tables_types_and_not_set_times() -> None:
    table = to_table(
        UsageKind.DIRECT_ROUTING,
        [
            {
                "id": "a",
                "startDateTime": "2019-11-01T00:00:25.105Z",
                "failureDateTime": "0001-01-01T00:00:00Z",
                "duration": 5,
                "successfulCall": True,
                "finalSipCode": 0,
            },
            {"id": "b", "startDateTime": "2019-11-01T00:01:00Z", "duration": "x"},
        ],
    )
    assert table.num_rows == 2
    assert table.schema.field("startDateTime").type == pa.timestamp("us", tz="UTC")
    assert table.column("failureDateTime").to_pylist() == [None, None]
    assert table.column("duration").to_pylist() == [5, None]
    day = datetime(2019, 11, 1, tzinfo=UTC)
    assert [d.isoformat() for d in utc_days(day, day + timedelta(days=1))] == ["2019-11-01"]
    assert len(list(utc_days(day + timedelta(hours=23), day + timedelta(hours=25)))) == 2
