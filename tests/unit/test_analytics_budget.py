"""The daily table rebuild keeps inside its time budget by not starting a day that, at the
run's own pace so far, would end past the deadline (with a third to spare): a function past
functionTimeout is stopped with its worker, so a 100,000-call day must not start at the end."""

from __future__ import annotations

import time
from datetime import date

from shared.analytics.rebuild import DayListing, Progress, _fits  # pyright: ignore[reportPrivateUsage]


def _day(records: int) -> DayListing:
    return DayListing(date(2026, 12, 1), {f"r{i}": (1, f"b{i}", 1) for i in range(records)})


def test_the_first_day_is_tried_and_a_day_that_would_overrun_is_not() -> None:
    now = time.monotonic()
    assert _fits(_day(100_000), Progress(), now, deadline=now + 1)  # no pace measured yet
    # 10,000 records in the first 100 s of the run: 0.01 s a record, so 100,000 more need
    # about 1,000 s, 1,500 with the margin.
    done = Progress(records_done=10_000)
    begun = now - 100.0
    assert _fits(_day(100_000), done, begun, deadline=now + 2_000)
    assert not _fits(_day(100_000), done, begun, deadline=now + 1_200)  # 1,000 s, no margin
    assert _fits(_day(1_000), done, begun, deadline=now + 1_200)  # a small day still fits
    assert not _fits(_day(1), done, begun, deadline=now - 1)  # past the deadline: nothing
