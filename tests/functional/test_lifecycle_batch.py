"""Lifecycle notification batches against the in-memory ports: only this app's subscription's
events (the current one and the one it replaced) count, each kind of action is asked for at
most once a batch, and the two that queue a reconciliation (missed, subscriptionRemoved) at
most once per 15 minutes, claimed with an ETag-guarded write so instances answering at once
queue one. A genuine "missed" still gets the lost records archived."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from devtools.graphsim.notifier import lifecycle_notification
from shared.archiver import archive_item
from shared.clock import utcnow
from shared.lifecycle import DEBOUNCE, claim, debounce_blob, lifecycle_batch, run_control
from shared.messages import ControlAction, ControlItem, WorkItem
from shared.subscriptions import SubscriptionAction, SubscriptionKeeper
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts, FakeState
from tests.functional.conftest import settings

ROTATED = "rotated-secret-0123456789abcdef-0123456789"
EVENTS = ("missed", "subscriptionRemoved", "reauthorizationRequired")


async def _replaced(ports: FakePorts) -> tuple[str, str]:
    """A subscription replaced by another on a new secret: (the current id, the previous)."""
    old = (await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()).subscription
    ports.settings = settings(
        GRAPH_CLIENT_STATE=ROTATED, GRAPH_CLIENT_STATE_PREVIOUS=ports.settings.client_state
    )
    outcome = await SubscriptionKeeper(ports.graph, ports.settings, ports.state).ensure()
    assert outcome.action is SubscriptionAction.REPLACED
    return outcome.subscription.id, old.id


def _actions(items: list[WorkItem | ControlItem]) -> list[ControlAction]:
    assert all(isinstance(i, ControlItem) for i in items)
    return sorted(i.action for i in items if isinstance(i, ControlItem))


async def _pass_debounce(ports: FakePorts) -> None:
    """The debounce time passes: each claim is moved back by it."""
    for action in (ControlAction.RECONCILE, ControlAction.RECREATE):
        value, etag = await ports.state.load(debounce_blob(action))
        assert value is not None
        then = datetime.fromisoformat(value["queuedAt"]) - DEBOUNCE
        await ports.state.save(debounce_blob(action), {"queuedAt": then.isoformat()}, etag)


async def test_a_flood_of_foreign_ids_asks_for_nothing(graph: FakeGraph, ports: FakePorts) -> None:
    await _replaced(ports)
    flood = [
        lifecycle_notification(str(uuid.uuid4()), EVENTS[i % 3], ports.settings.client_state)
        for i in range(1000)
    ]
    batch = await lifecycle_batch(ports, flood)
    assert batch.items == [] and len(batch.dropped) == 1000
    assert batch.counts == {"foreign": 1000, "debounced": 0}
    assert all("not this app's subscription" in d for d in batch.dropped)
    for action in (ControlAction.RECONCILE, ControlAction.RECREATE):  # nothing was claimed
        assert (await ports.state.load(debounce_blob(action))) == (None, None)


async def test_one_action_of_each_kind_reconciliations_debounced_for_15_minutes(
    graph: FakeGraph, ports: FakePorts
) -> None:
    current, previous = await _replaced(ports)
    secret = ports.settings.client_state
    genuine = [
        *[lifecycle_notification(current, "missed", secret) for _ in range(50)],
        *[lifecycle_notification(str(uuid.uuid4()), "missed", secret) for _ in range(50)],
        lifecycle_notification(
            previous.upper(), "subscriptionRemoved", secret
        ),  # the one it replaced
        lifecycle_notification(current, "missed", "forged"),
    ]
    first = await lifecycle_batch(ports, genuine)
    assert _actions(first.items) == sorted([ControlAction.RECONCILE, ControlAction.RECREATE])
    assert first.counts == {"foreign": 50, "debounced": 0} and len(first.dropped) == 51
    assert any("clientState does not match" in d for d in first.dropped)

    # Within the 15 minutes: no reconciliation again; a reauthorization is not debounced.
    again = await lifecycle_batch(
        ports, [*genuine, lifecycle_notification(current, "reauthorizationRequired", secret)]
    )
    assert _actions(again.items) == [ControlAction.REAUTHORIZE]
    assert again.counts == {"foreign": 50, "debounced": 2}

    await _pass_debounce(ports)
    later = await lifecycle_batch(ports, genuine)
    assert _actions(later.items) == sorted([ControlAction.RECONCILE, ControlAction.RECREATE])
    assert later.counts["debounced"] == 0


async def test_a_genuine_missed_gets_the_lost_records_archived(
    graph: FakeGraph, ports: FakePorts
) -> None:
    current, _ = await _replaced(ports)
    lost = [graph.add_record(utcnow() - timedelta(hours=h)) for h in (1, 5, 30)]
    batch = await lifecycle_batch(
        ports, [lifecycle_notification(current, "missed", ports.settings.client_state)]
    )
    (missed,) = batch.items
    assert isinstance(missed, ControlItem) and missed.action is ControlAction.RECONCILE
    await run_control(ports, missed)
    for queued in ports.work.take():  # the hourly slices of the last 48 hours
        assert isinstance(queued.item, ControlItem)
        await run_control(ports, queued.item)
    records = [q.item for q in ports.work.take()]
    assert sorted(i.id for i in records if isinstance(i, WorkItem)) == sorted(r.id for r in lost)
    for item in records:
        assert isinstance(item, WorkItem)
        await archive_item(ports, item, dequeue_count=1)
    assert sorted(name.split("/")[3] for name in ports.archive.blobs) == sorted(r.id for r in lost)


async def test_of_instances_claiming_at_once_one_wins() -> None:
    state = FakeState(interleave=True)  # each claim's read and write a request of its own
    now = utcnow()
    won = await asyncio.gather(*(claim(state, ControlAction.RECONCILE, now) for _ in range(8)))
    assert sorted(won) == [False] * 7 + [True]
    assert not await claim(state, ControlAction.RECONCILE, now + DEBOUNCE / 2)
    assert await claim(state, ControlAction.RECREATE, now)  # each action its own
    assert await claim(state, ControlAction.RECONCILE, now + DEBOUNCE)


async def test_a_claim_stamped_in_the_future_debounces_for_15_minutes_only() -> None:
    """A stamp a year ahead (a clock gone wrong) is ignored; one a few seconds ahead (another
    instance's clock) debounces like one just made."""
    state = FakeState()
    now = utcnow()
    await state.save(
        debounce_blob(ControlAction.RECONCILE),
        {"queuedAt": (now + timedelta(days=365)).isoformat()},
    )
    assert await claim(state, ControlAction.RECONCILE, now)
    assert not await claim(state, ControlAction.RECONCILE, now + timedelta(minutes=1))
    assert await claim(state, ControlAction.RECONCILE, now + DEBOUNCE)
    ahead = now + DEBOUNCE + timedelta(seconds=5)
    await state.save(debounce_blob(ControlAction.RECREATE), {"queuedAt": ahead.isoformat()})
    assert not await claim(state, ControlAction.RECREATE, now + DEBOUNCE)
