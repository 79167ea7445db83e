"""Keeping the subscription, against the in-memory ports: create then keep, renew near
expiry, the 409 rule (adopt the one Graph names), clientState rotation, a lost subscription
closing its gap by reconciliation, lifecycle actions, and a recreate that fails still queueing
the reconciliation of its gap."""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import pairwise

import pytest

from shared.archiver import archive_item
from shared.clock import utcnow
from shared.lifecycle import GAP_MARGIN_HOURS, keep_subscription, run_control
from shared.messages import ControlAction, ControlItem, Source, WorkItem
from shared.subscriptions import (
    CHANGE_TYPE,
    RESOURCE,
    STATE_BLOB,
    SubscriptionAction,
    SubscriptionError,
    SubscriptionKeeper,
    fingerprint,
)
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts
from tests.functional.conftest import settings


def keeper(ports: FakePorts) -> SubscriptionKeeper:
    return SubscriptionKeeper(ports.graph, ports.settings, ports.state)


async def test_created_once_then_kept_then_renewed_near_expiry(
    graph: FakeGraph, ports: FakePorts
) -> None:
    first = await keeper(ports).ensure()
    assert first.action is SubscriptionAction.CREATED
    (sub,) = graph.subscriptions.values()
    assert sub["notificationUrl"] == ports.settings.notification_url
    assert sub["lifecycleNotificationUrl"] == ports.settings.lifecycle_notification_url
    assert graph.secrets[sub["id"]] == ports.settings.client_state
    assert (await keeper(ports).ensure()).action is SubscriptionAction.KEPT
    sub["expirationDateTime"] = (utcnow() + timedelta(hours=2)).isoformat()
    renewed = await keeper(ports).ensure()
    assert renewed.action is SubscriptionAction.RENEWED
    assert renewed.subscription.remaining() > timedelta(days=2)
    assert len(graph.subscriptions) == 1


async def test_a_409_adopts_the_subscription_graph_names(
    graph: FakeGraph, ports: FakePorts
) -> None:
    # Another instance created it a moment ago; Graph does not list it to us yet.
    other = await keeper(ports).create()
    graph.unlisted.add(other.id)
    outcome = await keeper(ports).ensure()
    assert outcome.action is SubscriptionAction.ADOPTED
    assert outcome.subscription.id == other.id and len(graph.subscriptions) == 1


async def test_client_state_rotation_ends_with_one_subscription_on_the_new_secret(
    graph: FakeGraph, ports: FakePorts
) -> None:
    old = ports.settings.client_state
    new = "rotated-secret-0123456789abcdef-0123456789"
    first = (await keeper(ports).ensure()).subscription
    rotated = settings(GRAPH_CLIENT_STATE=new, GRAPH_CLIENT_STATE_PREVIOUS=old)
    keeper2 = SubscriptionKeeper(ports.graph, rotated, ports.state)
    outcome = await keeper2.ensure()
    assert outcome.action is SubscriptionAction.REPLACED
    (sub,) = graph.subscriptions.values()
    assert sub["id"] == outcome.subscription.id != first.id
    assert graph.secrets[sub["id"]] == new
    assert (sub["resource"], sub["changeType"]) == (RESOURCE, CHANGE_TYPE)
    assert (await keeper2.ensure()).action is SubscriptionAction.KEPT
    known, _ = await ports.state.load(STATE_BLOB)
    assert known is not None
    assert known["clientStateFingerprint"] == fingerprint(new, sub["id"])
    assert new not in str(known) and old not in str(known)


async def test_a_lost_subscription_reconciles_from_when_it_was_last_alive(
    graph: FakeGraph, ports: FakePorts
) -> None:
    first = await keep_subscription(ports)
    assert first.action is SubscriptionAction.CREATED and first.gap_since is None
    assert not ports.work.queued
    known, etag = await ports.state.load(STATE_BLOB)
    assert known is not None
    known["aliveAt"] = (utcnow() - timedelta(days=5)).isoformat()  # a stopped app
    await ports.state.save(STATE_BLOB, known, etag)
    graph.subscriptions.clear()  # Graph let it expire meanwhile
    second = await keep_subscription(ports)
    assert second.action is SubscriptionAction.CREATED
    (queued,) = ports.work.take()
    assert isinstance(queued.item, ControlItem) and queued.item.action is ControlAction.RECONCILE
    assert queued.item.hours in (5 * 24 + GAP_MARGIN_HOURS, 5 * 24 + GAP_MARGIN_HOURS + 1)


async def test_lifecycle_actions(graph: FakeGraph, ports: FakePorts) -> None:
    created = (await keep_subscription(ports)).subscription
    # reauthorizationRequired: reauthorized in place, nothing else.
    await run_control(ports, ControlItem(ControlAction.REAUTHORIZE, created.id))
    assert any(r.endswith("/reauthorize") for r in graph.requests) and not ports.work.queued
    # subscriptionRemoved: created again, and the gap reconciled as hourly slices.
    graph.subscriptions.clear()
    await run_control(ports, ControlItem(ControlAction.RECREATE, created.id, hours=3))
    assert len(graph.subscriptions) == 1
    kinds = [q.item.action for q in ports.work.take() if isinstance(q.item, ControlItem)]
    assert ControlAction.RECONCILE_SLICE in kinds
    # missed: the slices of the last hours.
    await run_control(ports, ControlItem(ControlAction.RECONCILE, hours=2))
    slices = ports.work.take()
    assert 2 <= len(slices) <= 3
    assert all(
        isinstance(q.item, ControlItem) and q.item.action is ControlAction.RECONCILE_SLICE
        for q in slices
    )


async def test_a_recreate_that_fails_still_closes_the_gap(
    graph: FakeGraph, ports: FakePorts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the subscription cannot be created again (a person must fix the URL), the missed
    records are queued anyway, and the action fails so the queue retries it."""
    lost = [graph.add_record(utcnow() - timedelta(hours=h)).id for h in (1, 20)]
    graph.script = [(200, None), (400, None)]  # the listing, then the create: handshake failed
    with pytest.raises(SubscriptionError, match="validation handshake"):
        await run_control(ports, ControlItem(ControlAction.RECREATE, str(uuid.uuid4())))
    slices = [q.item for q in ports.work.take()]
    assert len(slices) in (48, 49)
    assert all(
        isinstance(s, ControlItem) and s.action is ControlAction.RECONCILE_SLICE for s in slices
    )
    starts = [s.since for s in slices if isinstance(s, ControlItem)]
    assert all(a and b and a > b for a, b in pairwise(starts)), "newest first"
    for item in slices:
        assert isinstance(item, ControlItem)
        await run_control(ports, item)
    queued = [q.item for q in ports.work.take()]
    assert sorted(i.id for i in queued if isinstance(i, WorkItem)) == sorted(lost)
    assert {i.source for i in queued if isinstance(i, WorkItem)} == {Source.RECONCILE}
    for item in queued:
        assert isinstance(item, WorkItem)
        await archive_item(ports, item, dequeue_count=1)
    assert sorted(name.split("/")[3] for name in ports.archive.blobs) == sorted(lost)
