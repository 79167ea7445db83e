"""Progress through a time range, for the progress bars of backfills and syncs."""

from __future__ import annotations

from datetime import datetime


def fraction_done(since: datetime, until: datetime, done_until: datetime | None) -> float:
    """How much of [since, until) is done when everything before ``done_until`` is (0 to 1)."""
    total = (until - since).total_seconds()
    if done_until is None or total <= 0:
        return 0.0 if done_until is None else 1.0
    return min(1.0, (done_until - since).total_seconds() / total)
