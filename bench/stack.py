"""The services a benchmark part runs against, each on free loopback ports: Azurite, the Graph
simulator and devtools.host (the app as `func start` would run it), plus CPU accounting for
every process involved, so a figure can be read beside what the machine was busy with."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools import azurite as azurite_mod
from devtools.apphost import AppHost
from devtools.graphsim.process import Simulator, start_simulator

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The timers talk to Graph (subscription keeper) or enqueue work (reconcile, hourly at :37):
# neither belongs in a measurement, so hosted runs switch them off.
DISABLED_TIMERS = {
    "AzureWebJobs.keep_subscription.Disabled": "true",
    "AzureWebJobs.reconcile.Disabled": "true",
    "AzureWebJobs.rebuild_tables.Disabled": "true",
}


def unique(prefix: str) -> str:
    """A queue or container name (3-63 lowercase characters) no other run uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def proc_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (with its threads), from /proc/<pid>/stat."""
    if not pid:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def self_cpu_seconds() -> float:
    """CPU seconds of this (the benchmark's own) process, every thread included."""
    return time.process_time()


@dataclass
class CpuMeter:
    """CPU seconds used by named processes between start() and stop(), beside the wall time."""

    pids: dict[str, int | None]
    include_self: bool = True
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0
    wall: float = 0.0
    used: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        values = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        if self.include_self:
            values["bench"] = self_cpu_seconds()
        return values

    def start(self) -> CpuMeter:
        self._start, self._t0 = self._read(), time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        """End an interval; intervals of one meter add up (interleaved measurements)."""
        end = self._read()
        self.wall += time.perf_counter() - self._t0
        for k in end:
            self.used[k] = round(self.used.get(k, 0.0) + end[k] - self._start.get(k, 0.0), 3)
        return self.as_dict()

    def as_dict(self) -> dict[str, float]:
        cores = os.cpu_count() or 1
        busy = sum(self.used.values())
        return {
            "wall_s": round(self.wall, 3),
            **{f"cpu_{k}_s": v for k, v in self.used.items()},
            "machine_busy": round(busy / (self.wall * cores), 3) if self.wall else 0.0,
        }


@dataclass
class Stack:
    """Azurite and (optionally) the simulator for one benchmark part."""

    azurite: azurite_mod.Azurite
    sim: Simulator | None
    client_state: str = field(default_factory=lambda: secrets.token_urlsafe(32))

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

    def app_env(self, queue: str, container: str) -> dict[str, str]:
        """App settings for this stack, a queue and a container (what Bicep sets in Azure)."""
        env = {
            "AzureWebJobsStorage": self.conn,
            "CALLRECORDS_QUEUE": queue,
            "ARCHIVE_CONTAINER": container,
            "GRAPH_CLIENT_STATE": self.client_state,
        }
        if self.sim is not None:
            env.update(self.sim.env())
        return env


@contextlib.contextmanager
def stack(with_sim: bool = True) -> Iterator[Stack]:
    """Start Azurite (and the simulator) on free ports; stop them (and delete their data)."""
    az = azurite_mod.start()
    sim = None
    try:
        sim = start_simulator() if with_sim else None
        yield Stack(az, sim)
    finally:
        if sim is not None:
            sim.close()
        az.close()


@contextlib.contextmanager
def app_environ(env: dict[str, str]) -> Iterator[None]:
    """Put app settings into os.environ for in-process runs (azure-identity reads
    IDENTITY_ENDPOINT from there), restoring what was there after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ARCHIVED = re.compile(rb" archive: archived ")
_FAILED = re.compile(rb"Executed '[^']+' \(Failed")
_REQUEUED = re.compile(rb"fetching again in ")


class HostProcess(AppHost):
    """The app under devtools.host (timers off), counting what its log says it did."""

    def __init__(self, env: dict[str, str], log_path: Path, extra: dict[str, str] | None = None):
        super().__init__({**DISABLED_TIMERS, **env, **(extra or {})}, log_path)
        self._offset = 0
        self.archived = 0
        self.failed = 0
        self.requeued = 0  # records put back on the queue with a delay (404, long throttle)

    def start(self, timeout: float = 60.0) -> HostProcess:
        super().start(timeout)
        self._offset = self.log_path.stat().st_size
        return self

    def poll_log(self) -> tuple[int, int]:
        """Read new log lines; (records archived, failed invocations) since start()."""
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1  # count whole lines only
        self._offset += cut
        lines = chunk[:cut]
        self.archived += len(_ARCHIVED.findall(lines))
        self.failed += len(_FAILED.findall(lines))
        self.requeued += len(_REQUEUED.findall(lines))
        return self.archived, self.failed

    def stop(self, timeout: float = 40.0) -> None:
        super().stop(timeout)

    def __enter__(self) -> HostProcess:
        return self.start()


def create_queue(conn: str, name: str) -> None:
    """Create a queue (Bicep does in Azure), closing the client: Azurite's shutdown waits
    for open connections."""
    from azure.storage.queue import QueueClient

    with QueueClient.from_connection_string(conn, name) as client:
        client.create_queue()


def create_container(conn: str, name: str) -> None:
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(conn, name) as client:
        client.create_container()
