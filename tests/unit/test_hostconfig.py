"""Time budgets from host.json's functionTimeout, as the host reads it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from shared import hostconfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:30:00", timedelta(minutes=30)),
        ("00:10:00", timedelta(minutes=10)),
        ("01:00:00.500", timedelta(hours=1, seconds=0.5)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
        ("-1", hostconfig.UNBOUNDED_GRACE),
    ],
)
def test_timespans(text: str, expected: timedelta) -> None:
    assert hostconfig.parse_timespan(text) == expected


def test_malformed_timespan() -> None:
    with pytest.raises(ValueError, match="functionTimeout"):
        hostconfig.parse_timespan("30")


def test_budgets_leave_a_margin() -> None:
    assert hostconfig.budget_for(timedelta(minutes=30)) == timedelta(minutes=24)
    assert hostconfig.budget_for(timedelta(minutes=10)) == timedelta(minutes=8)
    assert hostconfig.budget_for(timedelta(seconds=4)) == timedelta(seconds=2)


def test_the_deployed_timeout_is_set_deliberately_and_budgets_fit_in_it() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["functionTimeout"] == "00:30:00"
    hostconfig.function_timeout.cache_clear()
    assert hostconfig.function_timeout() == timedelta(minutes=30)
    assert hostconfig.run_budget() == timedelta(minutes=24)


def test_the_budget_follows_host_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    monkeypatch.setattr(hostconfig, "HOST_JSON", tmp_path / "host.json")
    hostconfig.function_timeout.cache_clear()
    try:
        assert hostconfig.function_timeout() == hostconfig.DEFAULT_TIMEOUT
        (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "00:05:00"}))
        hostconfig.function_timeout.cache_clear()
        assert hostconfig.run_budget() == timedelta(minutes=3)
    finally:
        hostconfig.function_timeout.cache_clear()
