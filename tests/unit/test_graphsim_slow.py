"""The simulator's slow-endpoint states, as Graph documents them
(learn.microsoft.com/graph/change-notifications-delivery-webhooks, "Throttling"): slow answers
reaching 10% of the last 10 minutes delay new notifications, 15% drops them, per host, and an
endpoint leaves "drop" once its share is under 15% again."""

from __future__ import annotations

import time

from devtools.graphsim.notifier import SlowMeter
from devtools.graphsim.state import SimConfig

URL = "https://app.example/api/notifications"


def test_shares_of_slow_answers_delay_then_drop_per_host() -> None:
    config, meter = SimConfig(time_scale=1.0), SlowMeter()
    for _ in range(10):
        meter.record(URL, False, config)
    meter.record(URL, True, config)
    assert meter.state(URL, config) == SlowMeter.OK  # 1 of 11: 9.1%
    meter.record(URL, True, config)  # 2 of 12: 16.7%
    assert meter.state(URL, config) == SlowMeter.DROPPED
    # Throttling is per host: another path, or another query string, on it is dropped too.
    assert meter.state("https://app.example/api/other?x=1", config) == SlowMeter.DROPPED
    assert meter.state("https://elsewhere.example/hook", config) == SlowMeter.OK
    other = SlowMeter()
    for _ in range(8):
        other.record(URL, False, config)
    other.record(URL, True, config)  # 1 of 9: 11.1%
    assert other.state(URL, config) == SlowMeter.DELAYED


def test_the_drop_ends_when_the_share_falls_under_15_percent() -> None:
    config, meter = SimConfig(time_scale=1.0), SlowMeter()
    meter.record(URL, True, config)  # one slow answer: 100%
    assert meter.state(URL, config) == SlowMeter.DROPPED
    for _ in range(9):  # fast answers (a retried delivery, a lifecycle post) bring it down
        meter.record(URL, False, config)
    assert meter.state(URL, config) == SlowMeter.DELAYED  # 1 of 10
    meter.record(URL, False, config)
    assert meter.state(URL, config) == SlowMeter.OK  # 1 of 11


def test_with_no_deliveries_the_drop_ends_as_the_slow_answers_leave_the_window() -> None:
    config = SimConfig(time_scale=0.2 / 600)  # the 10-minute window: 0.2 s
    meter = SlowMeter()
    meter.record(URL, True, config)
    assert meter.state(URL, config) == SlowMeter.DROPPED
    time.sleep(0.3)  # nothing delivered meanwhile (dropped): the window empties
    assert meter.state(URL, config) == SlowMeter.OK
