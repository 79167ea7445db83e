"""Keeping the subscription alive: the hourly keeper, lifecycle notifications, control actions.

Lifecycle notifications are answered 202 at once; the work they ask for (reauthorize,
recreate and reconcile, reconcile) goes through the queue as a ControlItem, so a slow Graph
never makes this endpoint slow and a failed action is retried like any message.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.graph import GraphError, NotFound
from shared.ids import is_guid
from shared.messages import ControlItem
from shared.notifications import same_secret
from shared.reconcile import reconcile_recent
from shared.runtime import Runtime
from shared.subscriptions import Outcome, SubscriptionError, SubscriptionKeeper
from shared.webhook import accept
from shared.workqueue import Message

log = logging.getLogger("lifecycle")

EVENTS = {
    "reauthorizationrequired": "reauthorize",
    "subscriptionremoved": "recreate",
    "missed": "reconcile",
}


def sort_events(value: list[object], client_state: str) -> tuple[list[ControlItem], list[str]]:
    """Genuine lifecycle events as control actions (one per subscription and action)."""
    actions: dict[tuple[str, str | None], ControlItem] = {}
    dropped: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            dropped.append(f"item {index}: not an object")
            continue
        if not same_secret(item.get("clientState"), client_state):
            dropped.append(f"item {index}: clientState does not match")
            continue
        action = EVENTS.get(str(item.get("lifecycleEvent", "")).lower())
        if action is None:
            dropped.append(
                f"item {index}: unknown lifecycleEvent {str(item.get('lifecycleEvent'))[:40]!r}"
            )
            continue
        sub = item.get("subscriptionId")
        if sub is not None and not is_guid(sub):
            dropped.append(f"item {index}: subscriptionId is not a GUID")
            continue
        key = (action, str(sub).lower() if sub else None)
        actions[key] = ControlItem(action, key[1])
    return list(actions.values()), dropped


def _lifecycle_items(
    value: list[object], client_state: str
) -> tuple[list[Message], list[str], dict[str, int]]:
    actions, dropped = sort_events(value, client_state)
    for action in actions:
        log.info("lifecycle: %s queued for subscription %s", action.action, action.subscription_id)
    return list(actions), dropped, {}


async def handle_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    """Graph lifecycle notifications -> queued control actions, then 202."""
    return await accept(req, "lifecycle notification", _lifecycle_items)


async def keep_subscription(rt: Runtime) -> Outcome:
    """Create, renew or adopt the subscription (hourly, at start-up, and on demand)."""
    outcome = await SubscriptionKeeper(rt.graph, rt.settings).ensure()
    log.info(
        "subscription %s %s, expires %s",
        outcome.subscription.id,
        outcome.action,
        outcome.subscription.expires.isoformat(),
    )
    return outcome


async def run_control(rt: Runtime, item: ControlItem) -> None:
    """Carry out a lifecycle action taken from the queue (raises to be retried)."""
    keeper = SubscriptionKeeper(rt.graph, rt.settings)
    if item.action == "reauthorize":
        if item.subscription_id:
            try:
                await keeper.reauthorize(item.subscription_id)
                log.info("subscription %s reauthorized", item.subscription_id)
                return
            except NotFound:
                log.warning("subscription %s is gone; recreating", item.subscription_id)
            except GraphError as exc:
                log.warning("reauthorize failed (%s); renewing instead", exc)
                await keeper.ensure(force_renew=True)
                return
        if (await keeper.ensure()).action == "created":
            # It was gone, so notifications may have been lost meanwhile.
            await reconcile_recent(rt, item.hours)
    elif item.action == "recreate":
        # Close the gap even if the subscription cannot be recreated right now (that needs a
        # person, and the message is retried): the reconciliation does not depend on it.
        try:
            await keep_subscription(rt)
        except (GraphError, SubscriptionError):
            await reconcile_recent(rt, item.hours)
            raise
        await reconcile_recent(rt, item.hours)
    elif item.action == "reconcile":
        await reconcile_recent(rt, item.hours)
