"""One local stack for the tests, `make run`, `make chaos` and `make bench`: Azurite, the Graph
simulator and the app under devtools.host, each on free loopback ports, and the app settings
that join them (what Bicep sets in Azure).

    with running() as st:
        st.create_queue(queue := unique("q")); st.create_container(container := unique("c"))
        host = st.host(st.app_env(queue, container), log_path).start()
        ... host.metrics(), st.sim.client.stats(), st.blob_names(container) ...
"""

from __future__ import annotations

import ast
import contextlib
import functools
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools import azurite as azurite_mod
from devtools.apphost import AppHost
from devtools.graphsim.process import Simulator, start_simulator

ROOT = Path(__file__).resolve().parent.parent


def unique(prefix: str) -> str:
    """A queue or container name (3-63 lowercase characters) no other run uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def new_client_state() -> str:
    """A fresh subscription secret (GRAPH_CLIENT_STATE) for one run."""
    return secrets.token_urlsafe(32)


def disabled(*functions: str) -> dict[str, str]:
    """App settings that switch functions off, as ``AzureWebJobs.<name>.Disabled`` does in Azure."""
    return {f"AzureWebJobs.{name}.Disabled": "true" for name in functions}


@functools.cache
def _blueprint_files(root: Path) -> list[Path]:
    """The feature packages' Functions Blueprints that function_app.py registers."""
    return sorted(root.glob("shared/*/triggers.py"))


def timer_functions(app_file: Path = ROOT / "function_app.py") -> tuple[str, ...]:
    """The names of the app's timer-triggered functions, read from the decorators in
    function_app.py and in the blueprints beside it (``@…function_name`` wins over the Python
    name, as in Azure)."""
    names = []
    for source in [app_file, *_blueprint_files(app_file.parent)]:
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls = [d for d in node.decorator_list if isinstance(d, ast.Call)]
            attrs = {c.func.attr: c for c in calls if isinstance(c.func, ast.Attribute)}
            if "timer_trigger" not in attrs:
                continue
            named = attrs.get("function_name")
            args = [*named.args, *(k.value for k in named.keywords)] if named else []
            literal = next((a.value for a in args if isinstance(a, ast.Constant)), None)
            names.append(str(literal) if literal else node.name)
    return tuple(names)


def timers_off() -> dict[str, str]:
    """Every timer switched off. They talk to Graph (subscription keeper) or queue work on a
    schedule (reconcile): runs that count what happens must not have them firing mid-way."""
    return disabled(*timer_functions())


def create_queue(conn: str, name: str, *, poison: bool = False) -> None:
    """Create a queue (and its ``-poison`` twin), as Bicep does in Azure. Each client is
    closed: Azurite's shutdown waits for open connections."""
    for queue in (name, f"{name}-poison") if poison else (name,):
        with QueueClient.from_connection_string(conn, queue) as client:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()


def create_container(conn: str, name: str) -> None:
    with ContainerClient.from_connection_string(conn, name) as client:
        with contextlib.suppress(ResourceExistsError):
            client.create_container()


def blob_names(conn: str, container: str) -> list[str]:
    """The archive's listing: every blob name in the container."""
    with ContainerClient.from_connection_string(conn, container) as client:
        return [b.name for b in client.list_blobs()]


@dataclass
class Stack:
    """Azurite and (optionally) the simulator, with one subscription secret."""

    azurite: azurite_mod.Azurite
    sim: Simulator | None = None
    client_state: str = field(default_factory=new_client_state)

    @property
    def conn(self) -> str:
        return self.azurite.connection_string

    def pids(self) -> dict[str, int | None]:
        pids: dict[str, int | None] = {
            "azurite": self.azurite.process.pid if self.azurite.process else None
        }
        if self.sim is not None:
            pids["graphsim"] = self.sim.process.pid if self.sim.process else None
        return pids

    def app_env(
        self, queue: str = "callrecords", container: str = "callrecords", **settings: str
    ) -> dict[str, str]:
        """App settings for this stack, a queue and a container, and ``settings`` on top."""
        env = {
            "AzureWebJobsStorage": self.conn,
            "CALLRECORDS_QUEUE": queue,
            "ARCHIVE_CONTAINER": container,
            "GRAPH_CLIENT_STATE": self.client_state,
        }
        if self.sim is not None:
            env.update(self.sim.env())
        return {**env, **settings}

    def create_queue(self, name: str, *, poison: bool = False) -> None:
        create_queue(self.conn, name, poison=poison)

    def create_container(self, name: str) -> None:
        create_container(self.conn, name)

    def blob_names(self, container: str) -> list[str]:
        return blob_names(self.conn, container)

    def host(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        timers: bool = False,
        port: int | None = None,
    ) -> AppHost:
        """The app under devtools.host for these settings (not started yet); timers off
        unless ``timers``, and ``env`` may switch any of them back on."""
        return AppHost({**({} if timers else timers_off()), **env}, log_path, port=port)

    def close(self) -> None:
        if self.sim is not None:
            self.sim.close()
        self.azurite.close()


def start(
    azurite_dir: Path | None = None,
    *,
    sim: bool = True,
    client_state: str | None = None,
    **sim_options: Any,
) -> Stack:
    """Start Azurite and (with ``sim``) the simulator (``sim_options``: start_simulator's) on
    free ports. Azurite's data lives in ``azurite_dir`` (kept) or a temporary folder (removed
    by close())."""
    az = azurite_mod.start(str(azurite_dir) if azurite_dir else None)
    try:
        simulator = start_simulator(**sim_options) if sim else None
    except BaseException:
        az.close()
        raise
    return Stack(az, simulator, client_state or new_client_state())


@contextlib.contextmanager
def running(
    azurite_dir: Path | None = None, *, sim: bool = True, **sim_options: Any
) -> Iterator[Stack]:
    """``start()`` for the length of a ``with`` block."""
    st = start(azurite_dir, sim=sim, **sim_options)
    try:
        yield st
    finally:
        st.close()
