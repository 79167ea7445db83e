"""The app under the simulator as strict as Graph: a 3-second client timeout, the 10% / 15%
slow-endpoint rules, no subscriptionRemoved or missed events for callRecords (a removed
subscription just stops), and later versions of old calls published without notice. The app
answers in time (never slow, nothing delayed or dropped), and what Graph never announces
(a silent removal, a lost late version) is closed by the keeper and the sweep."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import utcnow
from tests.integration.conftest import Host
from tests.integration.helpers import blobs, wait_for


def _archived(stack, container: str) -> set[str]:
    return set(blobs(stack.conn, container))


def test_the_app_holds_under_a_strict_graph(fresh_sim, stack, app_env, tmp_path) -> None:
    sim = fresh_sim.client
    container = app_env["ARCHIVE_CONTAINER"]
    stack.create_container(container)
    host = Host({**app_env, "RECONCILE_SWEEP_HOURS": "2"}, tmp_path / "host.log", keeper=True)
    try:
        assert host.run_function("keep_subscription") == "succeeded"
        (sub,) = sim.subscriptions()
        now = utcnow()
        notified = [
            sim.create_record(sessions=2, start=now - timedelta(minutes=40 + i)) for i in range(8)
        ]

        def names(records: list[dict]) -> set[str]:
            return {
                f"{(now - timedelta(minutes=40 + i)):%Y/%m/%d}/{r['id']}/v{r['version']}.json"
                for i, r in enumerate(records)
            }

        wait_for(lambda: names(notified) <= _archived(stack, container), 60, "notified records")
        stats = sim.stats()["notifications"]
        assert stats["slow_answers"] == 0  # every answer well inside 2,900 ms
        assert stats["delayed_slow"] == 0 and stats["dropped_slow"] == 0

        # Graph removes the subscription and says nothing (no subscriptionRemoved for
        # callRecords): calls in the gap are never notified.
        sim.remove_subscription(sub["id"])
        gap = [
            sim.create_record(sessions=1, start=now - timedelta(minutes=20 + i)) for i in range(3)
        ]
        # And a 5-day-old call gets version 2, its notification lost.
        old_start = now - timedelta(days=5)
        old = sim.create_record(sessions=1, start=old_start, notify=False)
        assert host.run_function("reconcile") == "succeeded"
        assert host.run_function("reconcile") == "succeeded"  # a first sweep: v1 archived
        v1 = f"{old_start:%Y/%m/%d}/{old['id']}/v1.json"
        wait_for(lambda: v1 in _archived(stack, container), 60, "the old call's version 1")
        sim.new_version(old["id"], notify=False)

        assert host.run_function("keep_subscription") == "succeeded"  # the hourly keeper
        assert len(sim.subscriptions()) == 1 and sim.subscriptions()[0]["id"] != sub["id"]
        for _ in range(2):  # one more sweep
            assert host.run_function("reconcile") == "succeeded"
        gap_names = {
            f"{(now - timedelta(minutes=20 + i)):%Y/%m/%d}/{r['id']}/v1.json"
            for i, r in enumerate(gap)
        }
        v2 = f"{old_start:%Y/%m/%d}/{old['id']}/v2.json"
        wait_for(
            lambda: gap_names | {v2} <= _archived(stack, container), 90, "the gap and version 2"
        )
        assert sim.stats()["notifications"]["dropped_slow"] == 0
    finally:
        host.stop()
