"""The poison queue against the in-memory ports: a failure parked with its reason, the host's
copies (with the queue's 7-day expiry) kept forever, replay putting items back once."""

from __future__ import annotations

import time
from datetime import timedelta

from shared import poison
from shared.archiver import archive_item
from shared.clock import utcnow
from shared.messages import ControlItem, Source, WorkItem
from tests.fakes.graph import FakeGraph, FakeRecord
from tests.fakes.storage import FakePorts
from tests.functional.conftest import archived_ids

RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"


async def test_parked_with_the_reason_then_replayed_once(
    graph: FakeGraph, ports: FakePorts
) -> None:
    graph.script = [(400, None)]  # a permanent error: parked at once
    await archive_item(ports, WorkItem.new(RID, Source.NOTIFICATION), dequeue_count=1)
    assert "permanent error: Graph answered 400" in ports.work.poison[0]["reason"]
    # The host's own copy of another message: plain JSON, the queue's default expiry.
    host_copy = WorkItem.new("0b3c8b8e-5a0e-4a43-9d7e-4b1a6f0b2c11", Source.NOTIFICATION)
    ports.work.raw_poison.send(host_copy.to_json(), expires_on=utcnow() + timedelta(days=7))
    ports.work.raw_poison.send("{not json")
    seen: list[tuple[str, str]] = []
    dry = await poison.replay(
        ports.work,
        ports.work.raw_poison,
        dry_run=True,
        report=lambda p, o: seen.append((p.label, o)),
    )
    assert (dry.seen, dry.replayed, dry.malformed_kept) == (3, 0, 1)
    assert (RID, "would replay") in seen
    done = await poison.replay(ports.work, ports.work.raw_poison, ids={RID})
    assert done.replayed == 1 and done.skipped == 1
    (again,) = ports.work.take()
    assert isinstance(again.item, WorkItem) and again.item.id == RID and again.item.attempt == 0
    assert len(ports.work.raw_poison.messages) == 2  # the other two stay, visible again
    assert all(m.leased_until <= time.monotonic() for m in ports.work.raw_poison.messages)
    # Graph answers it now: the replayed message archives the record.
    graph.records[RID] = FakeRecord(RID, utcnow() - timedelta(hours=1), 1, 1, 1)
    assert isinstance(again.item, WorkItem)
    await archive_item(ports, again.item, dequeue_count=1)
    assert RID in archived_ids(ports)


async def test_the_hosts_copies_are_kept_forever(ports: FakePorts) -> None:
    expiring = utcnow() + timedelta(days=7)
    ports.work.raw_poison.send(WorkItem.new(RID, Source.NOTIFICATION).to_json(), expiring)
    ports.work.raw_poison.send(ControlItem.reconcile_slice(utcnow(), utcnow()).to_json(), expiring)
    await ports.work.put_poison(WorkItem.new(RID, Source.CLI), "gave up", "x")  # no expiry
    seen, resent = await poison.keep_forever(ports.work, ports.work.raw_poison)
    assert (seen, resent) == (3, 2)
    assert all(m.expires_on is None for m in ports.work.raw_poison.messages)
    assert len(ports.work.raw_poison.messages) == 3  # copied, originals deleted, none lost
    assert await poison.keep_forever(ports.work, ports.work.raw_poison) == (3, 0)
