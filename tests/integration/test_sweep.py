"""The rolling sweep through the whole stack (development host, simulator, Azurite): with the
notifications for a late first version and for a later version of a 5-day-old call both lost,
one full sweep archives both. The week is scaled down to RECONCILE_SWEEP_HOURS=3 runs, each
run triggered like an operator would in Azure (POST /admin/functions/reconcile)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from shared.clock import utcnow
from tests.integration.conftest import Host
from tests.integration.helpers import blobs, wait_for

SWEEP_RUNS = 3


def _run_sweep(host: Host) -> None:
    for _ in range(SWEEP_RUNS):
        assert host.run_function("reconcile") == "succeeded"


def test_a_full_sweep_archives_versions_whose_notifications_were_lost(
    fresh_sim, stack, app_env, tmp_path
) -> None:
    container = app_env["ARCHIVE_CONTAINER"]
    stack.create_container(container)
    now = utcnow()
    # Graph publishes a record's later versions at any time ("Subsequent versions of a
    # callRecord may be created beyond the stated latencies"), and first versions can be late.
    old = fresh_sim.client.create_record(sessions=2, start=now - timedelta(days=5), notify=False)
    env = {**app_env, "RECONCILE_SWEEP_HOURS": str(SWEEP_RUNS)}
    host = Host(env, tmp_path / "host.log")
    try:
        _run_sweep(host)
        v1 = f"{(now - timedelta(days=5)):%Y/%m/%d}/{old['id']}/v1.json"
        wait_for(lambda: v1 in blobs(stack.conn, container), 90, "version 1 archived")

        # Both notifications lost: version 2 of the 5-day-old call, and a new call that Graph
        # published 60 hours after it started (past the daily 48-hour deep pass).
        assert fresh_sim.client.new_version(old["id"], notify=False)["version"] == 2
        late_start = now - timedelta(hours=60)
        late = fresh_sim.client.create_record(sessions=1, start=late_start, notify=False)
        health = httpx.get(f"{host.url}/api/health").json()
        assert health["reconcile_sweep"]["state"] == "complete"
        first_completed = health["reconcile_sweep"]["lastCompletedAt"]

        _run_sweep(host)
        v2 = f"{(now - timedelta(days=5)):%Y/%m/%d}/{old['id']}/v2.json"
        new = f"{late_start:%Y/%m/%d}/{late['id']}/v1.json"

        def both_archived() -> dict[str, object] | None:
            found = blobs(stack.conn, container)
            return found if {v2, new} <= set(found) else None

        archived = wait_for(both_archived, 90, "both lost versions archived")
        assert archived[v2] == fresh_sim.client.expected(old["id"])
        assert archived[new] == fresh_sim.client.expected(late["id"])
        assert v1 in archived  # the archive never rewrites: version 1 stays as it was

        sweep = httpx.get(f"{host.url}/api/health").json()["reconcile_sweep"]
        assert sweep["state"] == "complete" and sweep["runs"] == SWEEP_RUNS
        assert sweep["lastCompletedAt"] > first_completed
        assert host.invocations("archive_call_record").get("failed", 0) == 0
    finally:
        host.stop()


async def test_runs_at_once_advance_the_sweep_once(runtime) -> None:
    """Runs at the same moment (a timer run and operators'): the cursor is saved on its ETag,
    so a run that lost the race queues nothing; every piece queued is a step of its own."""
    import asyncio

    from shared import sweep

    counts = await asyncio.gather(
        *(sweep.queue_next_piece(runtime.state, runtime.work, 168) for _ in range(4))
    )
    advanced = [n for n in counts if n]
    assert advanced  # a run that lost the race queued nothing; the others each took a step
    state, _ = await sweep.load(runtime.state)
    assert state is not None and state.runs == len(advanced)  # one step per queued piece
    queued = await runtime.work.queue.peek_messages(max_messages=32)
    assert len(queued) == sum(counts)
    spans = sorted(m.content for m in queued)
    assert len(set(spans)) == len(spans)  # no slice queued twice
