"""Pacing logic: isolated 429s change nothing, an exhausted budget is learned; windows hold."""

from __future__ import annotations

import random

import pytest

from shared import ratelimit
from shared.ratelimit import AdaptiveRate, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ratelimit.time, "monotonic", c)
    return c


def test_random_429s_never_slow_the_archiver_down(clock) -> None:
    pace, rng = AdaptiveRate(), random.Random(1)
    for _ in range(20_000):  # 10% of answers 429, at 200 requests/s
        clock.now += 0.005
        if rng.random() < 0.10:
            pace.throttled(1)
        else:
            pace.answered()
    assert pace.rate is None and pace.cuts == 0


def test_exhausted_budget_is_learned_from_what_graph_admitted(clock) -> None:
    pace = AdaptiveRate()
    for _ in range(1500):  # 1,500 admitted in 10 s, then the window is full
        clock.now += 10 / 1500
        pace.answered()
    for _ in range(12):
        clock.now += 0.01
        pace.throttled(5)
    assert pace.cuts == 1
    assert pace.rate == pytest.approx(1500 / 20 * 0.97)
    assert pace.resume_at == pytest.approx(clock.now + 5, abs=0.2)


async def test_paced_slots_follow_the_rate(clock, monkeypatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake_sleep)
    pace = AdaptiveRate()
    pace.rate, pace.last_cut = 10.0, clock.now
    for _ in range(5):
        await pace.wait()
    assert sum(slept) == pytest.approx(0.4)  # 5 requests at 10/s: the first goes at once


async def test_sliding_window_never_exceeds_its_limit(clock, monkeypatch) -> None:
    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(ratelimit.asyncio, "sleep", fake_sleep)
    window, times = SlidingWindow(40, 20.0), []
    for _ in range(130):
        await window.wait()
        times.append(clock.now)
    for i in range(len(times) - 40):
        assert times[i + 40] - times[i] >= 20.0
