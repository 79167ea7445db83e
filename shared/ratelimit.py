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
            delay = self.delay()
            if delay <= 0:
                self.take()
                return
            await asyncio.sleep(delay + 0.001)

    def delay(self) -> float:
        """Seconds until one more call fits (0: now); takes nothing."""
        now = time.monotonic()
        while self.calls and now - self.calls[0] >= self.period:
            self.calls.popleft()
        if len(self.calls) < self.limit:
            return 0.0
        return self.period - (now - self.calls[-self.limit])

    def take(self) -> None:
        self.calls.append(time.monotonic())


class AdaptiveRate:
    """Unpaced until Graph's app budget is exhausted; then paced just under what it admitted.

    Isolated 429s (a busy Graph front end) are retried by the caller and change nothing here.
    The budget is exhausted when most recent answers are 429 (at least MIN_THROTTLED of the
    last RECENT): then the rate becomes 97% of the requests Graph admitted over its 20-second
    window, nothing is sent until Retry-After has passed, and the rate is probed upwards by 1%
    each clean window. With several instances, each learns its share the same way.
    """

    RECENT = 20  # answers looked at to tell an exhausted budget from isolated 429s
    MIN_THROTTLED = 10
    BUDGET_WINDOW = 20.0  # seconds: Graph's throttling window for call records
    HEADROOM = 0.97
    PROBE = 1.01  # rate increase per clean BUDGET_WINDOW
    FLOOR = 1.0

    def __init__(self) -> None:
        self.rate: float | None = None  # requests/s; None: not paced
        self.next_slot = 0.0
        self.resume_at = 0.0
        self.recent: deque[bool] = deque(maxlen=self.RECENT)  # True: answered 429
        self.admitted: deque[float] = deque()  # times of answers that were not 429
        self.last_cut = -1e9
        self.last_probe = 0.0
        self.cuts = 0

    async def wait(self) -> None:
        """Wait for this request's slot."""
        now = time.monotonic()
        if self.rate is not None and now - max(self.last_cut, self.last_probe) > self.BUDGET_WINDOW:
            self.rate *= self.PROBE
            self.last_probe = now
        start = max(now, self.resume_at)
        if self.rate is not None:
            start = max(start, self.next_slot)
            self.next_slot = start + 1.0 / self.rate
        if start > now:
            await asyncio.sleep(start - now)

    def answered(self) -> None:
        """A request got an answer other than 429."""
        now = time.monotonic()
        self.recent.append(False)
        self.admitted.append(now)
        while self.admitted and now - self.admitted[0] > self.BUDGET_WINDOW:
            self.admitted.popleft()

    def throttled(self, retry_after: float | None) -> None:
        """A request got a 429: pace only if the budget, not a single request, was refused."""
        now = time.monotonic()
        self.recent.append(True)
        if sum(self.recent) < self.MIN_THROTTLED or now - self.last_cut < 1.0:
            return
        while self.admitted and now - self.admitted[0] > self.BUDGET_WINDOW:
            self.admitted.popleft()
        self.rate = max(self.FLOOR, len(self.admitted) / self.BUDGET_WINDOW * self.HEADROOM)
        self.last_cut = now
        self.cuts += 1
        self.recent.clear()
        self.resume_at = max(self.resume_at, now + (retry_after or 1.0))
