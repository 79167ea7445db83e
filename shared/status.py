"""Health in one look: subscription, queues, recent archiving, and a plain verdict.

`python cli.py status` prints it; GET /api/health returns it as JSON (503 when unhealthy),
so a monitor can alert on "deployed, no errors, no data" before a compliance gap grows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.graph import GraphError
from shared.messages import utcnow
from shared.runtime import Runtime
from shared.subscriptions import SubscriptionKeeper
from shared.usage.health import usage_facts

EXPIRY_WARNING = timedelta(hours=12)
STALE_MESSAGE = timedelta(minutes=15)
BACKLOG = 5000
RECENT_DAYS = 3


class Verdict(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass
class Status:
    verdict: Verdict = Verdict.HEALTHY
    problems: list[str] = field(default_factory=list[str])
    subscription_id: str | None = None
    subscription_expires: datetime | None = None
    queue_depth: int | None = None
    poison_depth: int | None = None
    oldest_visible_message_minutes: float | None = None
    last_archived_blob: str | None = None
    last_archived_at: datetime | None = None
    archived_last_24h: int = 0
    usage_logs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    checked_at: datetime = field(default_factory=utcnow)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: date-times as ISO 8601 text."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


async def _queue_facts(rt: Runtime, status: Status, now: datetime) -> None:
    try:
        props = await rt.work.queue.get_queue_properties()
        status.queue_depth = int(props.approximate_message_count or 0)
        # peek_messages is a coroutine returning a list (not an async iterator).
        for message in await rt.work.queue.peek_messages(max_messages=1):
            if message.inserted_on:
                age = now - message.inserted_on.astimezone(UTC)
                status.oldest_visible_message_minutes = round(age.total_seconds() / 60, 2)
    except ResourceNotFoundError:
        status.problems.append(f"queue {rt.settings.queue_name} does not exist")
    except AzureError as exc:
        status.problems.append(f"cannot read queue {rt.settings.queue_name}: {type(exc).__name__}")
    try:
        props = await rt.work.poison.get_queue_properties()
        status.poison_depth = int(props.approximate_message_count or 0)
    except ResourceNotFoundError:
        status.poison_depth = 0
    except AzureError as exc:
        status.problems.append(f"cannot read the poison queue: {type(exc).__name__}")


async def _archive_facts(rt: Runtime, status: Status, now: datetime) -> None:
    """Blobs written in the last 24 h, among the folders of the last RECENT_DAYS call dates
    (the archive is foldered by call start, and Graph publishes records within hours)."""
    last: tuple[datetime, str] | None = None
    since = now - timedelta(hours=24)
    try:
        for days_ago in range(RECENT_DAYS):
            day = now - timedelta(days=days_ago)
            async for blob in rt.archive.container.list_blobs(name_starts_with=f"{day:%Y/%m/%d}/"):
                modified = blob.last_modified.astimezone(UTC)
                if modified >= since:
                    status.archived_last_24h += 1
                if last is None or modified > last[0]:
                    last = (modified, blob.name)
    except ResourceNotFoundError:
        status.problems.append(f"archive container {rt.settings.archive_container} does not exist")
        return
    except AzureError as exc:
        status.problems.append(f"cannot list the archive container: {type(exc).__name__}")
        return
    if last:
        status.last_archived_at = last[0]
        status.last_archived_blob = last[1]


async def collect(
    rt: Runtime,
    check_subscription: bool = True,
    *,
    expiry_warning: timedelta = EXPIRY_WARNING,
    stale_after: timedelta = STALE_MESSAGE,
    backlog: int = BACKLOG,
) -> Status:
    """Gather the facts and name every problem found (thresholds are parameters for tests)."""
    now = utcnow()
    status = Status(checked_at=now)
    if check_subscription and not rt.settings.notification_url:
        status.problems.append(
            "NOTIFICATION_URL is not set: no subscription can be created or recognised as ours"
        )
    elif check_subscription:
        try:
            subs = await SubscriptionKeeper(rt.graph, rt.settings, rt.state).list()
        except GraphError as exc:
            subs = []
            status.problems.append(f"cannot read Graph subscriptions: {exc}")
        except AzureError as exc:  # the credential could not get a token
            subs = []
            status.problems.append(
                f"cannot get a Graph token: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
        else:
            if not subs:
                status.problems.append(
                    "no Graph subscription delivers to NOTIFICATION_URL: nothing new will be "
                    "archived until `python cli.py subscription ensure` (or the hourly keeper) creates one"
                )
            else:
                sub = subs[0]
                status.subscription_id = sub.id
                status.subscription_expires = sub.expires
                left = sub.remaining(now)
                if sub.notification_url != rt.settings.notification_url:
                    status.problems.append(
                        f"subscription {sub.id} delivers to another URL than NOTIFICATION_URL: "
                        "the keeper moves it on its next run (`cli.py subscription ensure`)"
                    )
                if left <= timedelta(0):
                    status.problems.append(f"subscription {sub.id} has expired")
                elif left < expiry_warning:
                    status.problems.append(
                        f"subscription {sub.id} expires in {left.total_seconds() / 3600:.1f} h "
                        "and has not been renewed: is the keep_subscription timer running?"
                    )
    await _queue_facts(rt, status, now)
    await _archive_facts(rt, status, now)
    status.usage_logs = await usage_facts(rt, now, status.problems)
    if status.poison_depth:
        status.problems.append(
            f"{status.poison_depth} message(s) in {rt.settings.poison_queue_name}: "
            "see why with `python cli.py replay-poison --dry-run`, fix the cause, then replay them"
        )
    if status.queue_depth and status.queue_depth > backlog:
        status.problems.append(f"queue is backing up: {status.queue_depth} messages")
    stale = status.oldest_visible_message_minutes
    if stale is not None and stale > stale_after.total_seconds() / 60:
        status.problems.append(
            f"queue is backing up: a message has waited {stale:.1f} min (is archive_call_record running?)"
        )
    status.verdict = Verdict.HEALTHY if not status.problems else Verdict.UNHEALTHY
    return status
