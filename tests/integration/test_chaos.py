"""A small chaos run in every `make test` (the full one is `make chaos`): Graph faults, a storage
outage, paused storage, a Graph 500 outage longer than the host's tries, and a killed host, and
still every record archived once, complete, at its latest version."""

from __future__ import annotations

import io
from typing import Any

import pytest

from devtools.chaos import Plan, run

pytestmark = pytest.mark.e2e


def test_small_chaos_run_loses_nothing() -> None:
    out = io.StringIO()
    result: dict[str, Any] = run(
        Plan(
            # Scaled to keep `make test` short: never-appearing records are parked one minute
            # after first seen (240 in production), which bounds the run's drain.
            records=20,
            notifications=60,
            never=2,
            seed=11,
            window_minutes=1,
            # Scaled: the host retries 2 s apart (host.json: 30 s), so 5 tries take 10 s and
            # the outage lasts 20 s, the shape of 2.5 min against 3 min.
            pause_seconds=8,
            outage_seconds=20,
            host_retry_seconds=2,
            retry_max_seconds=3,
        ),
        out=out,
    )
    report = out.getvalue()
    assert result["lost"] == 0, report
    assert result["incomplete"] == 0, report
    assert result["duplicated blobs"] == 0, report
    assert result["blobs for versions that do not exist"] == 0, report
    assert result["records at latest version, complete"] == result["records expected"] == 18
    assert result["poison = never-appearing, each with a reason"] is True, report
    # The faults really happened: otherwise this test proves nothing.
    assert sum(result["faults injected"].values()) > 0
    assert (
        result["webhook answers"].get("503", 0) + result["webhook answers"].get("ConnectError", 0)
        > 0
    )
    # Late records were really not there at first (and are archived all the same, above).
    answers = result["record fetches answered 404 / 429 / 5xx"]
    assert answers.get("404", 0) > 0
    assert answers.get("500", 0) > 0  # the outage happened, and was outlived, not parked
