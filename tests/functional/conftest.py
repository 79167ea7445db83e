"""The functional tier: the domain modules against in-memory ports (tests/fakes/): the real
GraphClient over an in-memory Graph, in-memory archive, state, queue and activity log. No
Azurite, no simulator, no subprocess, no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from shared import permission, reconcile
from shared.messages import ControlItem, WorkItem
from shared.ratelimit import SlidingWindow
from shared.settings import Settings, load_settings
from tests.fakes.graph import BASE, FakeGraph
from tests.fakes.storage import FakePorts

ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_CLIENT_STATE": "functional-tests-secret-0123456789abcdef",
    "GRAPH_BASE_URL": BASE,
    "NOTIFICATION_URL": "https://app.test/api/notifications",
}


def settings(**env: str) -> Settings:
    return load_settings({**ENV, **env})


@pytest.fixture(autouse=True)
def new_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs as an instance just started: no refusal or success seen yet
    (shared/permission.py), and a List callRecords pace of its own, lifted (the slice
    workers share one per process; tests/functional/test_reconcile.py checks pacing with a
    limiter of its own)."""
    view = permission._ProcessView()  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(permission, "_view", view)
    monkeypatch.setattr(reconcile, "_list_limiter", SlidingWindow(10_000, 1.0))


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def ports(graph: FakeGraph) -> AsyncIterator[FakePorts]:
    client = graph.client()
    yield FakePorts(settings=settings(), graph=client)
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


async def drain(ports: FakePorts, controls: Sequence[ControlItem] = ()) -> list[str]:
    """Work ``controls`` as the queue would, then every record queued by then (due or not):
    the ids archived. What a fault test ends with, to show the data still arrives."""
    from shared.archiver import archive_item
    from shared.lifecycle import run_control

    for item in controls:
        await run_control(ports, item)
    ids: list[str] = []
    for queued in ports.work.take():
        if isinstance(queued.item, WorkItem):
            ids.append(queued.item.id)
            await archive_item(ports, queued.item, dequeue_count=1)
    return ids


def archived_ids(ports: FakePorts) -> set[str]:
    """The record ids with a blob in the archive."""
    return {name.split("/")[3] for name in ports.archive.blobs if name.count("/") == 4}
