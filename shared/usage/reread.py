"""How far back an hourly usage sync re-reads: rows appear late.

The Teams admin center's usage reports, built from the same call logs, "usually reflect a
24 to 48 hour latency from time of activity"
(learn.microsoft.com/microsoftteams/teams-analytics-and-reports/pstn-minute-pools-report):
usually, so a re-read of exactly 48 hours misses every row later than that. Every run re-reads
at least MIN_REREAD (3 days, a day past the usual latency); once every
USAGE_LOGS_REREAD_EVERY_HOURS (0: every run) a deep run re-reads USAGE_LOGS_REREAD_DAYS
(default 7). When the last deep run completed is kept in the state store, per log, so the
deep re-read comes once a period whatever the instance, restarts or the hour the timer
happens to run at. Re-reading is cheap: what is archived is skipped by a day-folder listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.clock import parse_graph_datetime
from shared.ports import StatePort
from shared.settings import Settings
from shared.usage.kinds import UsageKind

MIN_REREAD = timedelta(days=3)


def _blob(kind: UsageKind) -> str:
    return f"usage-reread-{kind.value}.json"


@dataclass(frozen=True)
class Reread:
    since: datetime  # the run reads from here
    deep: bool  # a deep re-read: its completion is saved (deep_done)


def plan(
    watermark: datetime, now: datetime, last_deep: datetime | None, settings: Settings
) -> Reread:
    """Where a run from ``watermark`` starts: at least MIN_REREAD back, USAGE_LOGS_REREAD_DAYS
    when a deep re-read is due (never done, or done USAGE_LOGS_REREAD_EVERY_HOURS ago)."""
    every = timedelta(hours=settings.usage_reread_every_hours)
    deep = last_deep is None or every <= timedelta(0) or now - last_deep >= every
    back = max(MIN_REREAD, timedelta(days=settings.usage_reread_days)) if deep else MIN_REREAD
    return Reread(min(watermark - back, now - back), deep)


async def last_deep(state: StatePort, kind: UsageKind) -> datetime | None:
    data, _ = await state.load(_blob(kind))
    try:
        return parse_graph_datetime(data.get("lastDeepAt")) if data else None
    except ValueError:
        return None


async def deep_done(state: StatePort, kind: UsageKind, at: datetime) -> None:
    """A deep re-read read every page up to now: the next one is due a period from ``at``."""
    await state.save(_blob(kind), {"lastDeepAt": at.isoformat()})
