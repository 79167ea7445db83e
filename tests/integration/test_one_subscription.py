"""Two instances starting together on one storage account and one Graph: exactly one
subscription, and neither deletes the other's. Each host runs the keeper at the same moment
several times over (the timer's hourly run, a lifecycle action, an operator's run), as two
instances of a scale-out would."""

from __future__ import annotations

import threading

ROUNDS = 3


def test_two_hosts_started_together_leave_one_subscription_and_delete_none(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    stack.create_container(app_env["ARCHIVE_CONTAINER"])
    # Two instances of one app behind one public URL (the first host's): only the keeper on.
    first = stack.host(
        {**app_env, "AzureWebJobs.keep_subscription.Disabled": "false"}, tmp_path / "h0.log"
    )
    url = first.env["NOTIFICATION_URL"]
    second = stack.host(
        {**app_env, "AzureWebJobs.keep_subscription.Disabled": "false", "NOTIFICATION_URL": url},
        tmp_path / "h1.log",
    )
    hosts = [first, second]
    starters = [threading.Thread(target=h.start) for h in hosts]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    try:
        for _ in range(ROUNDS):
            outcomes: list[str] = []
            runs = [
                threading.Thread(
                    target=lambda h=h, out=outcomes: out.append(h.run_function("keep_subscription"))
                )
                for h in hosts
            ]
            for t in runs:
                t.start()
            for t in runs:
                t.join()
            assert outcomes == ["succeeded", "succeeded"], [h.tail() for h in hosts]
        subs = fresh_sim.client.subscriptions()
        assert len(subs) == 1
        assert subs[0]["notificationUrl"] == url
        changes = fresh_sim.client.stats()["subscription_changes"]
        assert changes == {"created": 1, "deleted": 0}
    finally:
        for h in hosts:
            h.stop()
