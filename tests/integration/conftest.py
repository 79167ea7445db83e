"""Shared fixtures: the local stack (devtools/stack.py): real Azurite, the Graph simulator
and the development host, on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devtools import azurite as azurite_mod
from devtools.apphost import AppHost
from devtools.graphsim.process import SimulatorProcess, start_simulator
from devtools.ports import closed_port
from devtools.stack import Stack, disabled, unique
from shared.clock import utcnow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_mod.Azurite]:
    """One Azurite for the whole run (blob + queue), started with --skipApiVersionCheck."""
    az = azurite_mod.start()
    yield az
    az.close()


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorProcess]:
    """One Graph simulator (with its managed-identity token endpoint) for the whole run."""
    s = start_simulator()
    yield s
    s.close()


@pytest.fixture
def stack(azurite, sim) -> Stack:
    """The session's Azurite and simulator, with a fresh subscription secret."""
    return Stack(azurite, sim)


@pytest.fixture
def app_env(stack, monkeypatch) -> dict[str, str]:
    """App settings pointing at this run's Azurite and simulator, with fresh names and secret."""
    # Fast "not yet available" retries in tests; the daily 48-hour reconcile pass at the hour
    # furthest from now, so a test's reconcile run lists the same recent hours whenever CI runs
    # (at the deep pass's hour it would queue 49 slices, not 5, and tests waiting on a slice
    # behind them time out).
    deep_hour = str((utcnow().hour + 12) % 24)
    env = stack.app_env(
        unique("q"),
        unique("c"),
        ARCHIVE_RETRY_BASE_SECONDS="1",
        RECONCILE_DEEP_PASS_HOUR=deep_hour,
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("ARCHIVE_STORAGE", "NOTIFICATION_URL", "LIFECYCLE_NOTIFICATION_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    return env


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A notification URL on which nothing will ever answer (connections are refused at
    once), held for the test so no other process on the machine can start listening there."""
    with closed_port() as port:
        yield f"http://127.0.0.1:{port}/api/notifications"


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
        super().__init__({**({} if keeper else disabled("keep_subscription")), **env}, log)
        self.start()


@pytest.fixture
def host(stack, app_env, tmp_path) -> Iterator[Host]:
    """The app, hosted like `func start`, against this test's queue and container."""
    stack.create_container(app_env["ARCHIVE_CONTAINER"])
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
