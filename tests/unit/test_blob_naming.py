"""Blob naming from startDateTime: the UTC day decides the folder, bad records cannot be named."""

from __future__ import annotations

import pytest

from shared.blobstore import blob_name
from shared.clock import parse_graph_datetime

RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2020-02-25T18:52:21.2169889Z", "2020/02/25"),
        ("2020-02-25T18:52:21Z", "2020/02/25"),
        ("2020-02-25T23:30:00-02:00", "2020/02/26"),  # UTC decides the day
        ("2020-03-01T00:30:00.5+01:00", "2020/02/29"),  # leap day, via the offset
        ("2021-12-31T23:59:59.9999999z", "2021/12/31"),
    ],
)
def test_blob_name_from_start_in_utc(start: str, expected: str) -> None:
    name = blob_name({"id": RID.upper(), "version": 3, "startDateTime": start})
    assert name == f"{expected}/{RID}/v3.json"


@pytest.mark.parametrize(
    "record",
    [
        {"id": RID, "version": 1},
        {"id": RID, "version": 1, "startDateTime": "yesterday"},
        {"id": RID, "version": "1", "startDateTime": "2020-02-25T18:52:21Z"},
        {"id": "../../etc", "version": 1, "startDateTime": "2020-02-25T18:52:21Z"},
        {"id": RID, "version": True, "startDateTime": "2020-02-25T18:52:21Z"},
    ],
)
def test_records_that_cannot_be_named(record: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        blob_name(record)


def test_parse_keeps_microseconds() -> None:
    assert parse_graph_datetime("2020-02-25T18:52:21.2169889Z").microsecond == 216988
