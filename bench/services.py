"""The services a benchmark part runs against: the local stack of devtools/stack.py (Azurite,
the Graph simulator, devtools.host, each on free loopback ports), plus CPU accounting for every
process involved, so a figure can be read beside what the machine was busy with. Progress is
read from counters (the host's /_host/metrics, the archive's listing), never from the log."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devtools.apphost import AppHost
from devtools.stack import (
    ROOT,
    Stack,
    blob_names,
    create_container,
    create_queue,
    timers_off,
    unique,
)
from devtools.stack import running as _running

__all__ = [
    "DISABLED_TIMERS",
    "ROOT",
    "CpuMeter",
    "HostProcess",
    "Progress",
    "Stack",
    "app_environ",
    "create_container",
    "create_queue",
    "stack",
    "unique",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The timers talk to Graph (subscription keeper) or enqueue work (reconcile, hourly at :37):
# neither belongs in a measurement, so hosted runs switch them off (every timer of the app).
DISABLED_TIMERS = timers_off()
QUEUE_FUNCTION = "archive_call_record"


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


def stack(with_sim: bool = True) -> contextlib.AbstractContextManager[Stack]:
    """Start Azurite (and the simulator) on free ports; stop them (and delete their data)."""
    return _running(sim=with_sim)


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


@dataclass(frozen=True)
class Progress:
    """How far a hosted run is, from counters."""

    invocations: int  # of the queue function that succeeded (a record archived, or put back)
    failed: int  # of the queue function that failed (the host tries them again)
    archived: int | None  # blobs in the host's container (None: not listed this time)


class HostProcess(AppHost):
    """The app under devtools.host (timers off), with its progress read from counters."""

    def __init__(self, env: dict[str, str], log_path: Path, extra: dict[str, str] | None = None):
        super().__init__({**DISABLED_TIMERS, **env, **(extra or {})}, log_path)
        self.archived = 0
        self.failed = 0
        # Records put back on the queue with a delay (404, long throttle): invocations that
        # succeeded without writing a blob. Exact when no record is archived twice.
        self.requeued = 0

    def start(self, timeout: float = 60.0) -> HostProcess:
        super().start(timeout)
        return self

    def progress(self, *, list_archive: bool = True) -> Progress:
        """The host's counters (cheap: poll them often), and with ``list_archive`` the
        number of blobs in its container (a listing: a few times a second at most)."""
        counts = self.invocations(QUEUE_FUNCTION)
        archived = None
        if list_archive:
            env = self.settings
            archived = len(blob_names(env["AzureWebJobsStorage"], env["ARCHIVE_CONTAINER"]))
        return Progress(counts.get("succeeded", 0), counts.get("failed", 0), archived)

    def poll_log(self) -> tuple[int, int]:
        """(records archived, failed invocations) since start(), from the archive's listing
        and the host's counters (the name is older than the counters: no log is read)."""
        now = self.progress()
        assert now.archived is not None
        self.archived, self.failed = now.archived, now.failed
        self.requeued = max(0, now.invocations - now.archived)
        return self.archived, self.failed

    def stop(self, timeout: float = 40.0) -> None:
        super().stop(timeout)

    def __enter__(self) -> HostProcess:
        return self.start()
