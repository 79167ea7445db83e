"""Keeping the subscription alive: the hourly keeper, lifecycle events, control actions.

Lifecycle notifications are answered 202 at once; the work they ask for (reauthorize,
recreate and reconcile, reconcile) goes through the queue as a ControlItem, so a slow Graph
never makes this endpoint slow and a failed action is retried like any message. A
reconciliation is itself queued as hourly slices (shared/reconcile.py), one message each.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.clock import utcnow
from shared.graph import GraphError, NotFound
from shared.ids import is_guid
from shared.messages import ControlAction, ControlItem, WorkItem
from shared.notifications import Sorted, as_notification, same_secret
from shared.ports import KeeperPorts, StatePort
from shared.reconcile import RETENTION, queue_recent_slices, reconcile_slice
from shared.subscriptions import (
    Outcome,
    SubscriptionAction,
    SubscriptionError,
    SubscriptionKeeper,
    known_subscription_ids,
)

log = logging.getLogger(__name__)

EVENTS = {
    "reauthorizationrequired": ControlAction.REAUTHORIZE,
    "subscriptionremoved": ControlAction.RECREATE,
    "missed": ControlAction.RECONCILE,
}


# Both queue a reconciliation of up to 48 hours of slices: at most one of each per this long,
# whatever the number of batches, so a flood of lifecycle POSTs cannot multiply Graph reads.
# The hourly timer reconciles the recent hours anyway, so nothing waits long on a skipped one.
DEBOUNCE = timedelta(minutes=15)
DEBOUNCED = (ControlAction.RECONCILE, ControlAction.RECREATE)


def debounce_blob(action: ControlAction) -> str:
    return f"lifecycle-{action}.json"


def sort_events(
    value: Sequence[object], client_state: str | tuple[str, ...], known: frozenset[str]
) -> tuple[list[ControlItem], list[str], int]:
    """Genuine lifecycle events for this app's subscription (``known``: the current and the
    previous id) as control actions, at most one per action; (actions, dropped, foreign)."""
    actions: dict[ControlAction, ControlItem] = {}
    dropped: list[str] = []
    foreign = 0
    for index, raw in enumerate(value):
        item = as_notification(raw)
        if isinstance(item, str):
            dropped.append(f"item {index}: {item}")
            continue
        if not same_secret(item.client_state, client_state):
            dropped.append(f"item {index}: clientState does not match")
            continue
        action = EVENTS.get((item.lifecycle_event or "").lower())
        if action is None:
            dropped.append(f"item {index}: unknown lifecycleEvent {item.lifecycle_event!r:.40}")
            continue
        sub = item.subscription_id
        if sub is not None and not is_guid(sub):
            dropped.append(f"item {index}: subscriptionId is not a GUID")
            continue
        sub = sub.lower() if sub else None
        if sub is not None and sub not in known:
            foreign += 1
            dropped.append(f"item {index}: subscriptionId is not this app's subscription")
            continue
        actions.setdefault(action, ControlItem(action, sub))
    return list(actions.values()), dropped, foreign


async def claim(state: StatePort, action: ControlAction, now: datetime | None = None) -> bool:
    """True if ``action`` may be queued now: none was in the last DEBOUNCE. The claim is an
    ETag-guarded write, so of two instances answering at once only one queues it."""
    now = now or utcnow()
    name = debounce_blob(action)
    data, etag = await state.load(name)
    try:
        last = datetime.fromisoformat(str((data or {})["queuedAt"]))
    except (KeyError, ValueError):
        last = None
    # Either side of now: another instance's clock may run a little ahead. A stamp further in
    # the future than DEBOUNCE (a clock gone wrong, a hand edit) is ignored, or it would
    # debounce every reconciliation until that time came.
    if last is not None and last.tzinfo is not None and abs(now - last) < DEBOUNCE:
        return False
    return await state.save(name, {"queuedAt": now.isoformat()}, etag or "") is not None


async def lifecycle_batch(ports: KeeperPorts, value: Sequence[object]) -> Sorted:
    """A lifecycle-notification batch as the control actions to queue: only this app's
    subscription's events, at most one action of each kind, reconciliations debounced."""
    known = await known_subscription_ids(ports.state)
    actions, dropped, foreign = sort_events(value, ports.settings.client_states, known)
    debounced = 0
    kept: list[ControlItem] = []
    for action in actions:
        if action.action in DEBOUNCED and not await claim(ports.state, action.action):
            debounced += 1
            continue
        log.info("lifecycle: %s queued for subscription %s", action.action, action.subscription_id)
        kept.append(action)
    items: list[WorkItem | ControlItem] = list(kept)
    return Sorted(items, dropped, {"foreign": foreign, "debounced": debounced})


MAX_RECONCILE_HOURS = int(RETENTION / timedelta(hours=1))  # all Graph keeps
# Calls that started this long before a gap may still have been published during it (a long
# meeting, then up to 150 minutes until its record appears): the range reaches back this much.
GAP_MARGIN_HOURS = 48


def keeper(ports: KeeperPorts) -> SubscriptionKeeper:
    return SubscriptionKeeper(ports.graph, ports.settings, ports.state)


def gap_hours(outcome: Outcome) -> int | None:
    """Hours to reconcile after a subscription was lost or replaced: from the last time the
    old one was known alive (with a margin), at most Graph's 30 days; None if no gap."""
    if outcome.gap_since is None:
        return None
    gap = (utcnow() - outcome.gap_since).total_seconds() / 3600
    return max(1, min(MAX_RECONCILE_HOURS, math.ceil(gap) + GAP_MARGIN_HOURS))


async def keep_subscription(ports: KeeperPorts) -> Outcome:
    """Create, renew, move or replace the subscription (hourly, at start-up, and on demand).
    When it was lost, a reconciliation from the time it was last known alive is queued: the
    gap closes even though Graph sends callRecords no subscriptionRemoved or missed events."""
    outcome = await keeper(ports).ensure()
    log.info(
        "subscription %s %s, expires %s",
        outcome.subscription.id,
        outcome.action,
        outcome.subscription.expires.isoformat(),
    )
    hours = gap_hours(outcome)
    if hours is not None:
        log.warning(
            "subscription %s (last known alive %s): queueing a reconciliation of the last %d h",
            outcome.action,
            outcome.gap_since.isoformat() if outcome.gap_since else "?",
            hours,
        )
        await ports.work.put([ControlItem(ControlAction.RECONCILE, hours=hours)])
    return outcome


async def run_control(ports: KeeperPorts, item: ControlItem) -> None:
    """Carry out a lifecycle action taken from the queue (raises to be retried)."""
    subscriptions = keeper(ports)
    if item.action is ControlAction.REAUTHORIZE:
        if item.subscription_id:
            try:
                await subscriptions.reauthorize(item.subscription_id)
                log.info("subscription %s reauthorized", item.subscription_id)
                return
            except NotFound:
                log.warning("subscription %s is gone; recreating", item.subscription_id)
            except GraphError as exc:
                log.warning("reauthorize failed (%s); renewing instead", exc)
                await subscriptions.ensure(force_renew=True)
                return
        outcome = await subscriptions.ensure()
        if outcome.action is SubscriptionAction.CREATED:
            # It was gone, so notifications may have been lost since it was last known alive.
            await queue_recent_slices(ports, gap_hours(outcome) or item.hours)
    elif item.action is ControlAction.RECREATE:
        # Close the gap even if the subscription cannot be recreated right now (that needs a
        # person, and the message is retried): the reconciliation does not depend on it.
        try:
            await keep_subscription(ports)
        except (GraphError, SubscriptionError):
            await queue_recent_slices(ports, item.hours)
            raise
        await queue_recent_slices(ports, item.hours)
    elif item.action is ControlAction.RECONCILE:
        await queue_recent_slices(ports, item.hours)
    elif item.action is ControlAction.RECONCILE_SLICE:
        await reconcile_slice(ports, item)
