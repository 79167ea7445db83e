"""Status facts for the usage logs: each log's watermark, rows archived in the last 24 h
(from the watermark blob's hourly counter, not a listing), and a problem when a watermark
falls more than 6 hours behind (the hourly run has missed five runs in a row)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError

from shared.ports import UsagePorts
from shared.usage.kinds import configured_kinds
from shared.usage.watermark import WatermarkStore

BEHIND = timedelta(hours=6)


async def usage_facts(
    ports: UsagePorts, now: datetime, problems: list[str], behind: timedelta = BEHIND
) -> list[dict[str, Any]]:
    """One entry per log: kind, watermark (ISO or None), hours behind, rows in the last 24 h.
    Problems found are appended to ``problems``. A log never synced yet is not a problem
    (a new deployment's first hourly run has not come); one that stopped is."""
    facts: list[dict[str, Any]] = []
    store = WatermarkStore(ports)
    for kind in configured_kinds(ports.settings.usage_kinds):
        try:
            mark = await store.load(kind)
        except AzureError as exc:
            problems.append(f"cannot read the {kind.label} log watermark: {type(exc).__name__}")
            continue
        lag = (now - mark.until) if mark.until else None
        facts.append(
            {
                "kind": kind.value,
                "label": kind.label,
                "watermark": mark.until.isoformat() if mark.until else None,
                "hours_behind": round(lag.total_seconds() / 3600, 2) if lag else None,
                "archived_last_24h": mark.written_since(now - timedelta(hours=24)),
            }
        )
        if lag is not None and lag > behind:
            problems.append(
                f"{kind.label} call logs are {lag.total_seconds() / 3600:.1f} h behind "
                f"(watermark {mark.until:%Y-%m-%d %H:%M} UTC): is the sync_usage_logs timer "
                "running? `python cli.py usage backfill --since 2d` fills the gap by hand"
            )
    return facts
