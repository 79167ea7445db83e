"""Pacing for Graph: the documented per-record and List limits, and an adaptive app-wide rate.

Graph allows 1,500 call-record requests / 20 s per app per tenant, 40 / 20 s per record and
40 / 20 s for List. A 429 costs a round trip and a Retry-After, so the archiver paces itself:
fixed sliding windows where the limit is per record or per listing (one process owns those),
and an adaptive rate for the app-wide budget, which every instance of the app shares.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` calls in any ``period`` seconds (waits, never fails)."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self.calls: deque[float] = deque()

    async def wait(self) -> None:
        while True:
            now = time.monotonic()
            while self.calls and now - self.calls[0] >= self.period:
                self.calls.popleft()
            if len(self.calls) < self.limit:
                self.calls.append(now)
                return
            await asyncio.sleep(self.period - (now - self.calls[0]) + 0.001)


class AdaptiveRate:
    """Unpaced until Graph throttles; then paced just under the rate it tolerated.

    On a 429 the rate drops to 90% of what was sent in the last few seconds (and nothing is
    sent until Retry-After has passed); while clean it creeps up slowly, so the budget stays
    ~95% used with few 429s. With several instances, each learns its share the same way.
    """

    WINDOW = 4.0  # seconds of history used to measure the sending rate
    DECREASE = 0.9
    INCREASE_PER_SECOND = 0.2  # requests/s added per second without a 429
    FLOOR = 1.0

    def __init__(self) -> None:
        self.rate: float | None = None  # None: not paced
        self.next_slot = 0.0
        self.resume_at = 0.0
        self.sent: deque[float] = deque()
        self.last_change = time.monotonic()
        self.throttles = 0

    def _observed(self, now: float) -> float:
        while self.sent and now - self.sent[0] > self.WINDOW:
            self.sent.popleft()
        return len(self.sent) / self.WINDOW

    async def wait(self) -> None:
        now = time.monotonic()
        if self.rate is not None:
            self.rate += self.INCREASE_PER_SECOND * (now - self.last_change)
            self.last_change = now
        start = max(now, self.resume_at)
        if self.rate is not None:
            start = max(start, self.next_slot)
            self.next_slot = start + 1.0 / self.rate
        self.sent.append(start)
        if start > now:
            await asyncio.sleep(start - now)

    def throttled(self, retry_after: float | None) -> None:
        now = time.monotonic()
        self.throttles += 1
        observed = self._observed(now)
        current = self.rate if self.rate is not None else observed
        self.rate = max(self.FLOOR, min(current, observed or current) * self.DECREASE)
        self.last_change = now
        if retry_after:
            self.resume_at = max(self.resume_at, now + retry_after)
