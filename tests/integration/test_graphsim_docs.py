"""The simulator's numbers are the documented ones (devtools/graphsim/README.md, "Documented
rules"): a changed default or threshold fails here, not silently in a slower test."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devtools.graphsim.faults import FaultConfig
from devtools.graphsim.notifier import SlowMeter
from devtools.graphsim.records import RETENTION
from devtools.graphsim.state import SimConfig


def test_delivery_and_slow_endpoint_defaults_are_the_documented_numbers() -> None:
    """learn.microsoft.com/graph/change-notifications-delivery-webhooks ("HTTP codes and retry
    logic", "Throttling")."""
    c = SimConfig()
    assert c.delivery_timeout_seconds == 3
    assert c.slow_answer_ms == 2900
    assert c.retry_hours == 4 and c.max_attempts == 0
    assert c.slow_window_minutes == 10
    assert (c.slow_delay_share, c.slow_drop_share) == (0.10, 0.15)
    # The older revision's 10-minute delay (the current one: 10 s); the drop lasts as long as
    # the share stays at 15% or more, so at most the 10-minute window once deliveries stop.
    assert c.slow_delay_seconds == 600 and c.slow_window_minutes == 10
    assert c.undocumented_lifecycle_events == 0  # change-notifications-lifecycle-events
    assert 0 < c.time_scale < 1  # hours of Graph's time run as seconds, never left out


def test_read_limits_retention_and_role_delay_are_the_documented_numbers() -> None:
    f = FaultConfig()
    # throttling-limits, "Cloud communication service limits" (the stricter revision)
    assert (f.record_first_limit, f.record_first_seconds) == (10, 20)
    assert (f.record_next_limit, f.record_next_seconds) == (50, 300)
    assert (f.usage_app_limit, f.usage_collection_limit, f.usage_window_seconds) == (200, 50, 60)
    assert f.record_limits
    assert RETENTION == timedelta(days=30)  # api/resources/callrecords-api-overview
    assert f.role_delay_hours == 24  # managed-identity-best-practice-recommendations


@pytest.mark.parametrize(
    ("slow", "total", "state"),
    [
        (1, 11, SlowMeter.OK),  # 9.1%
        (1, 10, SlowMeter.DELAYED),  # exactly 10%: "reaches 10%" (the older, stricter text)
        (2, 15, SlowMeter.DELAYED),  # 13.3%
        (3, 20, SlowMeter.DROPPED),  # exactly 15%: ">= 15%" (the older, stricter text)
        (4, 20, SlowMeter.DROPPED),  # 20%
    ],
)
def test_slow_endpoint_states_switch_at_10_and_15_percent(
    slow: int, total: int, state: str
) -> None:
    config = SimConfig(time_scale=1.0)  # the 10-minute window does not run out in the test
    meter = SlowMeter()
    for i in range(total):  # the slow answers first: the state is the share, nothing latched
        meter.record("http://x/", i < slow, config)
    assert meter.state("http://x/", config) == state
