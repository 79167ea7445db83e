"""The app under Graph's documented publication latency: a notification may come before the
record can be read (404 for up to 150 minutes after the call, api/callrecords-callrecord-get),
here 150 minutes scaled to about 3 s. The record must still be archived."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import utcnow
from tests.integration.conftest import Host
from tests.integration.helpers import blobs, wait_for


def test_a_record_notified_before_it_is_published_is_still_archived(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    sim = fresh_sim.client
    container = app_env["ARCHIVE_CONTAINER"]
    stack.create_container(container)
    sim.set_config(time_scale=3 / (150 * 60))
    host = Host(app_env, tmp_path / "host.log", keeper=True)
    try:
        assert host.run_function("keep_subscription") == "succeeded"
        start = utcnow() - timedelta(minutes=30)
        late = sim.create_record(sessions=2, start=start, available_after_minutes=150)
        name = f"{start:%Y/%m/%d}/{late['id']}/v1.json"
        wait_for(lambda: name in set(blobs(stack.conn, container)), 90, "the late record")
        by_kind = sim.stats()["responses_by_kind"]
        assert by_kind["record"].get("404", 0) >= 1  # it was read before publication
    finally:
        host.stop()


def test_a_record_notified_before_the_role_reaches_the_token_is_still_archived(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    """A new app role can take up to 24 hours to reach a managed identity's tokens
    (managed-identity-best-practice-recommendations), here about 3 s: reads are 403 until
    then, and the notified record must still be archived."""
    sim = fresh_sim.client
    container = app_env["ARCHIVE_CONTAINER"]
    stack.create_container(container)
    sim.set_config(time_scale=3 / (24 * 3600))
    host = Host(app_env, tmp_path / "host.log", keeper=True)
    try:
        assert host.run_function("keep_subscription") == "succeeded"
        sim.set_faults(grant_role=True)
        start = utcnow() - timedelta(minutes=30)
        record = sim.create_record(sessions=2, start=start)
        name = f"{start:%Y/%m/%d}/{record['id']}/v1.json"
        wait_for(lambda: name in set(blobs(stack.conn, container)), 90, "the record")
        assert sim.stats()["faults"].get("403", 0) >= 1  # it was read before the role arrived
    finally:
        host.stop()
