"""Health in one look: subscription, queues, recent archiving, and a plain verdict.

`python cli.py status` prints it; GET /api/health returns it as JSON (503 when unhealthy),
so a monitor can alert on "deployed, no errors, no data" before a compliance gap grows.

Silence is noticed two ways, both cheap enough for a monitor polling every few minutes:
one List page of the calls Graph has from the last 24 h, each looked up in the archive (a
record Graph has published for more than SAMPLE_GRACE but the archive lacks is a lost
notification that reconciliation has not repaired yet), and the archiver's activity log
(shared/activity.py: 25 HEAD requests, no listing) for "nothing archived in 24 h" while the
subscription is live and Graph does list calls (a quiet tenant is not a fault).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.blobstore import record_prefix
from shared.clock import parse_graph_datetime, utcnow
from shared.graph import GraphError, first_page
from shared.ids import is_guid
from shared.jsonvalues import as_object
from shared.permission import current_refusal
from shared.permission import health_problem as refusal_problem
from shared.poison import expires
from shared.ports import StatusPorts
from shared.subscriptions import SubscriptionKeeper
from shared.sweep import load as load_sweep
from shared.sweep import overdue as sweep_overdue
from shared.sweep import progress_facts as sweep_progress
from shared.usage.health import usage_facts

log = logging.getLogger(__name__)

EXPIRY_WARNING = timedelta(hours=12)
STALE_MESSAGE = timedelta(minutes=15)
BACKLOG = 5000
SAMPLE_SPAN = timedelta(hours=24)
# A record published this long ago should be archived: notifications arrive within minutes,
# and the hourly reconciliation covers the hours before.
SAMPLE_GRACE = timedelta(hours=2)
SAMPLE_LOOKUPS = 8  # archive look-ups in flight at once
PEEK = 32  # the most messages one peek returns


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
    oldest_parked_hours: float | None = None
    parked_with_expiry: int = 0  # among the oldest PEEK: host copies not yet kept forever
    oldest_visible_message_minutes: float | None = None
    last_archived_blob: str | None = None
    last_archived_at: datetime | None = None
    archived_last_24h: int = 0
    usage_logs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    graph_sampled: int | None = None  # records Graph listed for the last 24 h (one page)
    sample_missing: list[str] = field(default_factory=list[str])  # listed, not archived
    reconcile_sweep: dict[str, Any] = field(default_factory=dict[str, Any])  # shared/sweep.py
    checked_at: datetime = field(default_factory=utcnow)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: date-times as ISO 8601 text."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


async def _queue_facts(ports: StatusPorts, status: Status, now: datetime) -> None:
    try:
        status.queue_depth = await ports.work.depth()
        inserted = await ports.work.oldest_inserted()
        if inserted is not None:
            age = now - inserted
            status.oldest_visible_message_minutes = round(age.total_seconds() / 60, 2)
    except ResourceNotFoundError:
        status.problems.append(f"queue {ports.settings.queue_name} does not exist")
    except AzureError as exc:
        status.problems.append(
            f"cannot read queue {ports.settings.queue_name}: {type(exc).__name__}"
        )
    try:
        status.poison_depth = await ports.work.poison_depth()
    except ResourceNotFoundError:
        status.poison_depth = 0
    except AzureError as exc:
        status.problems.append(f"cannot read the poison queue: {type(exc).__name__}")
    if status.poison_depth:
        await _parked_facts(ports, status, now)


async def _parked_facts(ports: StatusPorts, status: Status, now: datetime) -> None:
    """Age of the oldest parked message (queues hand out roughly oldest first, so the first
    page of a peek holds it), read without decoding so any message can be looked at."""
    try:
        peeked = await ports.peek_poison(PEEK)
    except AzureError as exc:
        status.problems.append(f"cannot read the poison queue: {type(exc).__name__}")
        return
    inserted = [m.inserted_on.astimezone(UTC) for m in peeked if m.inserted_on]
    if inserted:
        status.oldest_parked_hours = round((now - min(inserted)).total_seconds() / 3600, 2)
    status.parked_with_expiry = sum(1 for m in peeked if expires(m))


async def _archive_facts(ports: StatusPorts, status: Status, now: datetime) -> None:
    """Blobs written in the last 24 h and the newest, from the archiver's activity log; and
    whether the archive container is there (one single-item listing)."""
    try:
        await ports.archive.any_blob()
    except ResourceNotFoundError:
        status.problems.append(
            f"archive container {ports.settings.archive_container} does not exist"
        )
        return
    except AzureError as exc:
        status.problems.append(f"cannot list the archive container: {type(exc).__name__}")
        return
    try:
        activity = await ports.activity.recent(now)
    except AzureError as exc:
        status.problems.append(f"cannot read the activity log: {type(exc).__name__}")
        return
    status.archived_last_24h = activity.archived
    status.last_archived_blob = activity.last_blob
    status.last_archived_at = activity.last_at


async def _sample_facts(
    ports: StatusPorts, status: Status, now: datetime, grace: timedelta
) -> None:
    """One List page of the last 24 h; each record published more than ``grace`` ago must
    have a blob (any version: a newer one may still be on its way)."""
    since = now - SAMPLE_SPAN
    flt = (
        f"startDateTime ge {since:%Y-%m-%dT%H:%M:%SZ} and startDateTime lt {now:%Y-%m-%dT%H:%M:%SZ}"
    )
    try:
        page = await first_page(
            ports.graph, ports.graph.url(f"communications/callRecords?$filter={flt}")
        )
    except GraphError as exc:
        status.problems.append(f"cannot list call records: {exc}")
        return
    except AzureError as exc:  # the credential could not get a token (named above)
        log.info("sample check skipped: %s", type(exc).__name__)
        return
    listed = [o for o in (as_object(v) for v in page.objects()) if o is not None]
    status.graph_sampled = len(listed)
    due: list[tuple[str, datetime]] = []
    for item in listed:
        rid = item.get("id")
        try:
            start = parse_graph_datetime(item.get("startDateTime"))
            published = parse_graph_datetime(
                item.get("lastModifiedDateTime") or item.get("endDateTime") or start.isoformat()
            )
        except ValueError:
            continue
        if is_guid(rid) and now - published >= grace:
            due.append((str(rid).lower(), start))
    gate = asyncio.Semaphore(SAMPLE_LOOKUPS)

    async def archived(rid: str, start: datetime) -> bool:
        async with gate:
            async for _ in ports.archive.names(record_prefix(rid, start)):
                return True
            return False

    try:
        found = await asyncio.gather(*(archived(rid, start) for rid, start in due))
    except AzureError as exc:
        status.problems.append(f"cannot look records up in the archive: {type(exc).__name__}")
        return
    status.sample_missing = [rid for (rid, _), ok in zip(due, found, strict=True) if not ok]


async def _permission_facts(ports: StatusPorts, status: Status, now: datetime) -> None:
    """Graph refusing the app (403) names the missing permission from the first refusal on."""
    try:
        refusal = await current_refusal(ports.state, now)
    except AzureError as exc:
        status.problems.append(f"cannot read the permission state: {type(exc).__name__}")
        return
    if refusal is not None:
        status.problems.insert(
            0,
            refusal_problem(
                refusal, ports.settings.permission_grace_hours, ports.settings.client_id, now
            ),
        )


async def _sweep_facts(ports: StatusPorts, status: Status, now: datetime) -> None:
    """The rolling sweep's progress and when the last one completed (one small blob read)."""
    runs = ports.settings.reconcile_sweep_hours
    try:
        sweep, _ = await load_sweep(ports.state)
    except AzureError as exc:
        status.problems.append(f"cannot read the reconcile sweep's state: {type(exc).__name__}")
        return
    status.reconcile_sweep = sweep_progress(sweep, runs)
    problem = sweep_overdue(sweep, runs, now)
    if problem:
        status.problems.append(problem)


async def collect(
    ports: StatusPorts,
    check_subscription: bool = True,
    *,
    expiry_warning: timedelta = EXPIRY_WARNING,
    stale_after: timedelta = STALE_MESSAGE,
    backlog: int = BACKLOG,
    sample_grace: timedelta = SAMPLE_GRACE,
) -> Status:
    """Gather the facts and name every problem found (thresholds are parameters for tests)."""
    now = utcnow()
    status = Status(checked_at=now)
    if check_subscription and not ports.settings.notification_url:
        status.problems.append(
            "NOTIFICATION_URL is not set: no subscription can be created or recognised as ours"
        )
    elif check_subscription:
        try:
            subs = await SubscriptionKeeper(ports.graph, ports.settings, ports.state).list()
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
                if sub.notification_url != ports.settings.notification_url:
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
    subscription_live = status.subscription_id is not None and not any(
        "has expired" in p for p in status.problems
    )
    await _queue_facts(ports, status, now)
    await _archive_facts(ports, status, now)
    status.usage_logs = await usage_facts(ports, now, status.problems)
    await _sweep_facts(ports, status, now)
    await _permission_facts(ports, status, now)
    if check_subscription:
        await _sample_facts(ports, status, now, sample_grace)
    parked_hours = status.oldest_parked_hours or 0.0
    if status.poison_depth and parked_hours >= ports.settings.poison_alert_hours:
        status.problems.append(
            f"{status.poison_depth} message(s) in {ports.settings.poison_queue_name}, the oldest "
            f"parked {parked_hours:.1f} h ago: see why with `python cli.py replay-poison "
            "--dry-run`, fix the cause, then replay them"
        )
    if status.sample_missing:
        status.problems.append(
            f"Graph lists {len(status.sample_missing)} call record(s) of the last 24 h that the "
            f"archive lacks (e.g. {status.sample_missing[0]}): notifications were lost; "
            "reconciliation queues them within a day, `python cli.py backfill --since 1d` now"
        )
    if subscription_live and status.graph_sampled and status.archived_last_24h == 0:
        status.problems.append(
            "nothing archived in 24 h although the subscription is live and Graph lists "
            f"{status.graph_sampled}+ call(s) from that time: is archive_call_record running?"
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
