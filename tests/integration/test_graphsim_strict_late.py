"""The app under Graph's documented delays, scaled to seconds: a notification may come before
the record can be read (404 for up to 150 minutes after the call,
api/callrecords-callrecord-get), or before a new app role reaches the managed identity's
token (403 for up to 24 hours, managed-identity-best-practice-recommendations). The record
must still be archived."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from shared.clock import utcnow
from tests.integration.conftest import Host
from tests.integration.helpers import blobs, wait_for


def _archived_through_the_app(
    fresh_sim: Any,
    stack: Any,
    app_env: dict[str, str],
    tmp_path: Any,
    *,
    delay_seconds: float,
    before: Callable[[Any], None] = lambda sim: None,
    **record: Any,
) -> dict[str, Any]:
    """The app subscribed under the host; Graph's delay (``delay_seconds`` of real time) scaled
    to about 3 s; ``before`` applied, then one record created and notified. Waits until it is
    archived and returns the simulator's statistics."""
    sim = fresh_sim.client
    container = app_env["ARCHIVE_CONTAINER"]
    stack.create_container(container)
    sim.set_config(time_scale=3 / delay_seconds)
    host = Host(app_env, tmp_path / "host.log", keeper=True)
    try:
        assert host.run_function("keep_subscription") == "succeeded"
        before(sim)
        start = utcnow() - timedelta(minutes=30)
        created = sim.create_record(sessions=2, start=start, **record)
        name = f"{start:%Y/%m/%d}/{created['id']}/v1.json"
        wait_for(lambda: name in set(blobs(stack.conn, container)), 90, "the record")
        return sim.stats()
    finally:
        host.stop()


def test_a_record_notified_before_it_is_published_is_still_archived(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    stats = _archived_through_the_app(
        fresh_sim, stack, app_env, tmp_path, delay_seconds=150 * 60, available_after_minutes=150
    )
    assert stats["responses_by_kind"]["record"].get("404", 0) >= 1  # read before publication


def test_a_record_notified_before_the_role_reaches_the_token_is_still_archived(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    stats = _archived_through_the_app(
        fresh_sim,
        stack,
        app_env,
        tmp_path,
        delay_seconds=24 * 3600,
        before=lambda sim: sim.set_faults(grant_role=True),
    )
    assert stats["faults"].get("403", 0) >= 1  # it was read before the role arrived
