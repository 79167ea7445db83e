"""The subscription keeper against the Graph simulator: the handshake is real, answered by
the app hosted like `func start`; the keeper runs in-process where the host adds nothing."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest

from shared.clock import utcnow
from shared.graph import GraphError
from shared.settings import SettingError, load_settings
from shared.subscriptions import (
    LIFETIME,
    RESOURCE,
    Subscription,
    SubscriptionAction,
    SubscriptionError,
    SubscriptionKeeper,
    fingerprint,
)

pytestmark = pytest.mark.e2e


def ours(sim, url: str) -> list[dict]:
    return [s for s in sim.client.subscriptions() if s["notificationUrl"] == url]


async def create_directly(rt, minutes: int) -> Subscription:
    """A subscription made outside the keeper (an earlier deployment, another instance)."""
    body = {
        "changeType": "updated",
        "notificationUrl": rt.settings.notification_url,
        "lifecycleNotificationUrl": rt.settings.lifecycle_notification_url,
        "resource": RESOURCE,
        "expirationDateTime": (utcnow() + timedelta(minutes=minutes)).isoformat(),
        "clientState": rt.settings.client_state,
    }
    sub = Subscription.from_graph(
        await rt.graph.request("POST", rt.graph.url("subscriptions"), body)
    )
    # As an earlier keeper run would have: the fingerprint of the secret it was made with.
    keeper = SubscriptionKeeper(rt.graph, rt.settings, rt.state)
    await keeper.remember(sub, fingerprint(rt.settings.client_state, sub.id))
    return sub


def assert_full_lifetime(sub: Subscription) -> None:
    expected = utcnow() + LIFETIME
    assert abs((sub.expires - expected).total_seconds()) < 120, sub.expires


@pytest.fixture
def rt(host, fresh_sim, make_runtime):
    """A Runtime whose NOTIFICATION_URL is the running host (which answers the handshake)."""
    return make_runtime(NOTIFICATION_URL=host.env["NOTIFICATION_URL"])


async def test_creates_with_both_urls_then_keeps(rt, sim, host) -> None:
    keeper = SubscriptionKeeper(rt.graph, rt.settings, rt.state)
    validations = sim.client.stats()["validations"]["ok"]

    created = await keeper.ensure()
    assert created.action == "created"
    assert_full_lifetime(created.subscription)
    (graph_side,) = ours(sim, host.env["NOTIFICATION_URL"])
    assert graph_side["id"] == created.subscription.id
    assert graph_side["lifecycleNotificationUrl"] == f"{host.url}/api/lifecycle"
    assert graph_side["changeType"] == "updated"
    assert graph_side["resource"] == RESOURCE
    assert graph_side["clientState"] == rt.settings.client_state
    # Both URLs passed the handshake, answered by the app itself.
    assert sim.client.stats()["validations"]["ok"] == validations + 2

    kept = await keeper.ensure()
    assert (kept.action, kept.subscription.id) == ("kept", created.subscription.id)
    assert sim.client.stats()["validations"]["ok"] == validations + 2
    assert len(ours(sim, host.env["NOTIFICATION_URL"])) == 1


async def test_near_expiry_is_renewed_in_place(rt, sim, host) -> None:
    short = await create_directly(rt, minutes=60)
    outcome = await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()
    assert (outcome.action, outcome.subscription.id) == ("renewed", short.id)
    assert_full_lifetime(outcome.subscription)
    (graph_side,) = ours(sim, host.env["NOTIFICATION_URL"])
    assert Subscription.from_graph(graph_side).expires == outcome.subscription.expires


async def test_deleted_behind_our_back_is_recreated(rt, sim, host) -> None:
    keeper = SubscriptionKeeper(rt.graph, rt.settings, rt.state)
    first = (await keeper.ensure()).subscription
    await keeper.delete(first.id)  # someone removed it in the portal
    second = await keeper.ensure()
    assert second.action == "created" and second.subscription.id != first.id

    # Gone between the listing and the renewal: the PATCH 404s and a new one is created.
    await keeper.delete(second.subscription.id)
    stale = dataclasses.replace(second.subscription, expires=utcnow() + timedelta(hours=1))

    class StaleList(SubscriptionKeeper):
        async def list(self, every: bool = False) -> list[Subscription]:
            return [stale]

    third = await StaleList(rt.graph, rt.settings, rt.state).ensure()
    assert third.action == "created"
    assert third.subscription.id not in (first.id, second.subscription.id)
    assert [s["id"] for s in ours(sim, host.env["NOTIFICATION_URL"])] == [third.subscription.id]


async def test_conflict_409_adopts_the_existing_one(rt, sim, host) -> None:
    existing = await create_directly(rt, minutes=4000)

    class BlindOnce(SubscriptionKeeper):
        """Misses the subscription on the first listing, as a racing instance would."""

        calls = 0

        async def list(self, every: bool = False) -> list[Subscription]:
            self.calls += 1
            return [] if self.calls == 1 else await super().list(every)

    keeper = BlindOnce(rt.graph, rt.settings, rt.state)
    outcome = await keeper.ensure()
    assert (outcome.action, outcome.subscription.id) == ("adopted", existing.id)
    assert keeper.calls == 1  # Graph's 409 names the existing subscription: no second listing
    assert [s["id"] for s in ours(sim, host.env["NOTIFICATION_URL"])] == [existing.id]


async def test_failed_handshake_is_one_clear_error(fresh_sim, make_runtime, dead_url) -> None:
    url = dead_url  # nobody answers there
    rt = make_runtime(NOTIFICATION_URL=url)
    before = fresh_sim.client.stats()["validations"]
    started = time.monotonic()
    with pytest.raises(SubscriptionError) as err:
        await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()
    message = str(err.value)
    assert "(400)" in message and "validation handshake" in message and url in message
    assert "Graph said:" in message and "could not be reached" in message
    # Tried once, not retried in a loop: one failed validation, nothing created, quick.
    after = fresh_sim.client.stats()["validations"]
    assert after["failed"] == before["failed"] + 1 and after["ok"] == before["ok"]
    assert fresh_sim.client.subscriptions() == []
    assert time.monotonic() - started < 10


async def test_over_quota_names_the_role_and_the_limit(fresh_sim, make_runtime) -> None:
    fresh_sim.client.set_config(subscription_quota=0)  # fresh_sim resets it afterwards
    rt = make_runtime(NOTIFICATION_URL="http://127.0.0.1:9/api/notifications")
    with pytest.raises(SubscriptionError, match=r"\(403\).*CallRecords\.Read\.All.*100"):
        await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()


async def test_ensure_needs_notification_url(app_env, make_runtime) -> None:
    rt = make_runtime()
    assert load_settings().notification_url is None
    with pytest.raises(SettingError, match="NOTIFICATION_URL is not set"):
        await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()


async def test_a_changed_notification_url_moves_the_subscription(rt, sim, host, make_runtime):
    """Graph allows one subscription per resource and changeType whatever the URL (409
    otherwise): a new ?code= or host name must move ours, not try to create a second."""
    first = (await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()).subscription
    moved_url = host.env["NOTIFICATION_URL"] + "?code=rotated"
    rt2 = make_runtime(
        NOTIFICATION_URL=moved_url,
        LIFECYCLE_NOTIFICATION_URL=rt.settings.lifecycle_notification_url,
    )
    outcome = await SubscriptionKeeper(rt2.graph, rt2.settings, rt2.state).ensure()
    assert (outcome.action, outcome.subscription.id) == (SubscriptionAction.MOVED, first.id)
    (graph_side,) = sim.client.subscriptions()
    assert (graph_side["id"], graph_side["notificationUrl"]) == (first.id, moved_url)
    again = await SubscriptionKeeper(rt2.graph, rt2.settings, rt2.state).ensure()
    assert again.action == SubscriptionAction.KEPT


async def test_a_changed_lifecycle_url_replaces_the_subscription(rt, sim, host, make_runtime):
    first = (await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()).subscription
    lifecycle = f"{host.url}/api/lifecycle?code=new"
    rt2 = make_runtime(
        NOTIFICATION_URL=host.env["NOTIFICATION_URL"], LIFECYCLE_NOTIFICATION_URL=lifecycle
    )
    outcome = await SubscriptionKeeper(rt2.graph, rt2.settings, rt2.state).ensure()
    assert outcome.action == SubscriptionAction.REPLACED
    (graph_side,) = sim.client.subscriptions()
    assert graph_side["id"] != first.id and graph_side["lifecycleNotificationUrl"] == lifecycle


async def test_a_second_create_is_refused_409_whatever_the_url(rt, sim) -> None:
    await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()
    body = {
        "changeType": "updated",
        "notificationUrl": rt.settings.notification_url + "?other=1",
        "resource": RESOURCE,
        "expirationDateTime": (utcnow() + timedelta(hours=2)).isoformat(),
        "clientState": "x",
    }
    with pytest.raises(GraphError) as err:
        await rt.graph.request("POST", rt.graph.url("subscriptions"), body)
    (existing,) = sim.client.subscriptions()
    assert err.value.status == 409
    assert f"Subscription Id {existing['id']} already exists" in err.value.message
