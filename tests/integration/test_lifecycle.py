"""Lifecycle events through the running app: the keeper timer subscribes at start-up, the
simulator sends the events to /api/lifecycle, and what was missed ends up archived."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import Host
from tests.integration.helpers import blobs, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def keeper_host(stack, app_env, fresh_sim, tmp_path) -> Iterator[Host]:
    """The app with its keep_subscription timer on, against an otherwise empty tenant."""
    stack.create_container(app_env["ARCHIVE_CONTAINER"])
    h = Host(dict(app_env), tmp_path / "host.log", keeper=True)
    assert h.run_function("keep_subscription") == "succeeded"  # as after a deployment
    yield h
    h.stop()


def live_subscription(sim, host: Host, other_than: str | None = None) -> dict:
    """Wait for the subscription the app made for itself (a new one, if ``other_than``)."""

    def find() -> dict | None:
        url = host.env["NOTIFICATION_URL"]
        subs = [s for s in sim.client.subscriptions() if s["notificationUrl"] == url]
        fresh = [s for s in subs if s["id"] != other_than]
        return fresh[0] if fresh else None

    return wait_for(find, timeout=20, what="the app's subscription")


def records_while_notifications_are_lost(sim, count: int) -> list[str]:
    """Calls that happen while Graph drops notifications (a removed subscription, 'drop')."""
    dropped = sim.client.stats()["notifications"]["dropped"]
    sim.client.pause_notifications("drop")
    try:
        ids = [sim.client.create_record(sessions=2, participants=2)["id"] for _ in range(count)]
    finally:
        sim.client.resume_notifications()
    assert sim.client.stats()["notifications"]["dropped"] == dropped + count
    return ids


def archived_ids(app_env) -> set[str]:
    names = blobs(app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"])
    return {name.split("/")[3] for name in names}


def test_missed_reconciles_and_reauthorization_reauthorizes(keeper_host, sim, app_env) -> None:
    sub = live_subscription(sim, keeper_host)
    wait_for(
        lambda: keeper_host.invocations("keep_subscription") == {"succeeded": 1},
        what="the keeper's start-up run to end",
    )
    lost = records_while_notifications_are_lost(sim, 3)
    assert not archived_ids(app_env) & set(lost)

    sim.client.set_config(undocumented_lifecycle_events=1)  # never sent for callRecords
    answer = sim.client.lifecycle(sub["id"], "missed")
    assert answer["delivered"] and answer["status"] == 202
    wait_for(lambda: set(lost) <= archived_ids(app_env), what="the missed records archived")
    # Worked as one queue message per hour of start time.
    wait_for(lambda: "hourly slices queued" in keeper_host.log(), what="the slices queued")
    assert archived_ids(app_env) == set(lost)  # the tenant held nothing else

    sim.client.reset_stats()
    answer = sim.client.lifecycle(sub["id"], "reauthorizationRequired")
    assert answer["delivered"] and answer["status"] == 202
    wait_for(
        lambda: sim.client.stats()["responses_by_kind"].get("subscriptions"),
        what="the reauthorization",
    )
    stats = sim.client.stats()
    # POST /subscriptions/{id}/reauthorize answered 204; nothing was created or deleted.
    assert stats["responses_by_kind"]["subscriptions"] == {"204": 1}
    assert [s["id"] for s in sim.client.subscriptions()] == [sub["id"]]


def test_subscription_removed_is_recreated_and_the_gap_closed(keeper_host, sim, app_env) -> None:
    old = live_subscription(sim, keeper_host)
    lost = records_while_notifications_are_lost(sim, 2)

    sim.client.set_config(undocumented_lifecycle_events=1)  # never sent for callRecords
    answer = sim.client.lifecycle(old["id"], "subscriptionRemoved")  # Graph deletes it too
    assert answer["delivered"]
    new = live_subscription(sim, keeper_host, other_than=old["id"])
    assert new["lifecycleNotificationUrl"] == f"{keeper_host.url}/api/lifecycle"
    wait_for(lambda: set(lost) <= archived_ids(app_env), what="the gap reconciled")

    # And the new subscription delivers: a call now arrives by notification alone.
    rid = sim.client.create_record(sessions=1, participants=2)["id"]
    wait_for(lambda: rid in archived_ids(app_env), what="a record notified to the new one")
    assert [s["id"] for s in sim.client.subscriptions()] == [new["id"]]
