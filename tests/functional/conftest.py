"""The functional tier: the domain modules against in-memory ports (tests/fakes/): the real
GraphClient over an in-memory Graph, in-memory archive, state, queue and activity log. No
Azurite, no simulator, no subprocess, no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def ports(graph: FakeGraph) -> AsyncIterator[FakePorts]:
    client = graph.client()
    yield FakePorts(settings=settings(), graph=client)
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]
