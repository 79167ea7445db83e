"""status.collect (and GET /api/health) on a working local stack, then with each fault."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest

from shared.archiver import archive_item, archive_record
from shared.messages import Source, WorkItem
from shared.status import collect
from shared.subscriptions import SubscriptionKeeper
from tests.integration.test_subscriptions import create_directly

pytestmark = pytest.mark.e2e


def health(host) -> httpx.Response:
    return httpx.get(f"{host.url}/api/health", timeout=30)


async def test_healthy_stack_then_each_fault_is_named(host, fresh_sim, make_runtime) -> None:
    rt = make_runtime(NOTIFICATION_URL=host.env["NOTIFICATION_URL"])
    await rt.work.ensure()

    # A subscription an hourly keeper should have renewed long ago.
    short = await create_directly(rt, minutes=60)
    facts = await collect(rt)
    assert facts.verdict == "unhealthy"
    assert facts.subscription_id == short.id
    assert any(f"{short.id} expires in 1.0 h" in p for p in facts.problems), facts.problems
    answer = health(host)
    assert answer.status_code == 503 and answer.json()["problems"] == facts.problems

    # Renewed, Graph lists a call and nothing was archived in 24 h: silence is a problem.
    await SubscriptionKeeper(rt.graph, rt.settings, rt.state).ensure()
    rid = fresh_sim.client.create_record(sessions=1, participants=2, notify=False)["id"]
    facts = await collect(rt)
    assert facts.graph_sampled == 1 and facts.archived_last_24h == 0
    assert [p for p in facts.problems if p.startswith("nothing archived in 24 h")], facts.problems

    # One record archived (counted by the archiver's activity log): healthy.
    item = WorkItem.new(rid, Source.CLI)
    await archive_item(rt, item, dequeue_count=1)
    archived = await archive_record(rt, item)  # already there: not counted twice
    facts = await collect(rt)
    assert (facts.verdict, facts.problems) == ("healthy", [])
    assert facts.subscription_id == short.id
    assert (facts.queue_depth, facts.poison_depth) == (0, 0)
    assert facts.last_archived_blob == archived.blob and facts.archived_last_24h == 1
    answer = health(host)
    assert answer.status_code == 200 and answer.json()["verdict"] == "healthy"

    host.stop()  # from here on messages stay queued, as with a stopped archiver

    fresh_sim.client.expire_subscription(short.id)
    facts = await collect(rt)
    assert facts.subscription_id is None
    assert any("no Graph subscription delivers to NOTIFICATION_URL" in p for p in facts.problems)

    await rt.work.put([WorkItem.new(str(uuid.uuid4()), Source.CLI)])
    await asyncio.sleep(1.5)  # Azurite's insertion times have whole seconds
    assert not any("backing up" in p for p in (await collect(rt)).problems)  # 15 min default
    facts = await collect(rt, stale_after=timedelta(seconds=1), backlog=0)
    backing_up = [p for p in facts.problems if p.startswith("queue is backing up")]
    assert len(backing_up) == 2 and "1 messages" in backing_up[0], backing_up
    assert "has waited" in backing_up[1]

    await rt.work.put_poison(WorkItem.new(rid, Source.CLI), "test", "Graph 404")
    facts = await collect(rt)
    assert facts.poison_depth == 1 and facts.oldest_parked_hours is not None
    assert facts.parked_with_expiry == 0
    assert any(
        p.startswith(f"1 message(s) in {rt.settings.poison_queue_name}, the oldest parked")
        and "replay-poison" in p
        for p in facts.problems
    )
    # POISON_ALERT_HOURS tolerates parked messages younger than it (they never expire).
    lenient = make_runtime(NOTIFICATION_URL=host.env["NOTIFICATION_URL"], POISON_ALERT_HOURS="1")
    facts = await collect(lenient)
    assert facts.poison_depth == 1
    assert not any(rt.settings.poison_queue_name in p for p in facts.problems), facts.problems


async def test_without_notification_url_or_container_status_says_so(app_env, make_runtime) -> None:
    rt = make_runtime()
    await rt.work.ensure()
    facts = await collect(rt)
    assert facts.verdict == "unhealthy"
    assert facts.problems == [
        "NOTIFICATION_URL is not set: no subscription can be created or recognised as ours",
        f"archive container {rt.settings.archive_container} does not exist",
    ]
