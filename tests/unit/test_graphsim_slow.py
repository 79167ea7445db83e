"""The simulator's slow-endpoint states, as Graph documents them: over 10% slow answers in the
last 10 minutes delays new notifications, over 15% drops them."""

from __future__ import annotations

from devtools.graphsim.notifier import SlowMeter
from devtools.graphsim.state import SimConfig

URL = "https://app.example/api/notifications"


def test_shares_of_slow_answers_delay_then_drop() -> None:
    config, meter = SimConfig(time_scale=1.0), SlowMeter()
    for _ in range(9):
        meter.record(URL, False, config)
    meter.record(URL, True, config)
    assert meter.state(URL, config) == SlowMeter.OK  # 10%: not over it
    meter.record(URL, False, config)
    meter.record(URL, True, config)  # 2 of 12: 16.7%
    assert meter.state(URL, config) == SlowMeter.DROPPED
    other = SlowMeter()
    for _ in range(8):
        other.record(URL, False, config)
    other.record(URL, True, config)  # 1 of 9: 11.1%
    assert other.state(URL, config) == SlowMeter.DELAYED
    assert other.state("https://elsewhere.example/hook", config) == SlowMeter.OK
