"""Shared fixtures: real Azurite, the Graph simulator and the development host, on free ports."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools import azurite as azurite_mod
from devtools.apphost import AppHost

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_mod.Azurite]:
    """One Azurite for the whole run (blob + queue), started with --skipApiVersionCheck."""
    az = azurite_mod.start()
    yield az
    az.close()


@pytest.fixture(scope="session")
def sim() -> Iterator[object]:
    """One Graph simulator (with its managed-identity token endpoint) for the whole run."""
    from devtools.graphsim.process import start_simulator

    s = start_simulator()
    yield s
    s.close()


def unique(prefix: str) -> str:
    """A queue/container name no other test uses (3-63 lowercase characters)."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def app_env(azurite, sim, monkeypatch) -> dict[str, str]:
    """App settings pointing at this run's Azurite and simulator, with fresh names and secret."""
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "CALLRECORDS_QUEUE": unique("q"),
        "ARCHIVE_CONTAINER": unique("c"),
        "GRAPH_CLIENT_STATE": secrets.token_urlsafe(32),
        "ARCHIVE_RETRY_BASE_SECONDS": "1",  # fast "not yet available" retries in tests
        **sim.env(),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("ARCHIVE_STORAGE", "NOTIFICATION_URL", "LIFECYCLE_NOTIFICATION_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    return env


@pytest.fixture
async def runtime(app_env) -> AsyncIterator[object]:
    """The process-wide Runtime for these settings, with its queues and container created."""
    from shared import runtime as rt_mod

    await rt_mod.reset_runtime()
    rt = await rt_mod.get_runtime()
    await rt.work.ensure()
    await rt.archive.container.create_container()
    yield rt
    await rt_mod.reset_runtime()


class Host(AppHost):
    """The app under devtools.host, started at once, NOTIFICATION_URL pointing at it.

    The subscription keeper is off unless a test turns it on (keeper=True), so tests do not
    leave subscriptions behind in the shared simulator.
    """

    def __init__(self, env: dict[str, str], log: Path, keeper: bool = False) -> None:
        extra = {} if keeper else {"AzureWebJobs.keep_subscription.Disabled": "true"}
        super().__init__({**env, **extra}, log)
        self.start()


@pytest.fixture
def host(app_env, tmp_path) -> Iterator[Host]:
    """The app, hosted like `func start`, against this test's queue and container."""
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).create_container(
        app_env["ARCHIVE_CONTAINER"]
    )
    h = Host(dict(app_env), tmp_path / "host.log")
    yield h
    h.stop()


@pytest.fixture
def fresh_sim(sim) -> Iterator[object]:
    """The session simulator emptied (records, subscriptions, faults, config) before and after:
    for tests that list the whole tenant or leave subscriptions a later test must not see."""
    sim.client.reset()
    yield sim
    sim.client.reset()


@pytest.fixture
async def make_runtime(app_env) -> AsyncIterator[object]:
    """``make(**overrides)``: a Runtime for these settings plus overrides (e.g. a host's
    NOTIFICATION_URL), separate from the process-wide one; all closed after the test."""
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    made = []

    def make(**overrides: str) -> object:
        rt = build_runtime(load_settings({**os.environ, **overrides}))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.close()
