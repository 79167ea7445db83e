"""What one benchmark run does: the issue's counts, or smaller ones with --quick."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent

PARTS = (
    "webhook",
    "archiver",
    "memory",
    "throttle",
    "reconcile",
    "tabulate",
    "latency",
    "cost",
    "usage",
    "hostile",
)


def host_concurrency(root: Path = ROOT) -> int:
    """Queue messages one instance works at once: host.json's batchSize + newBatchThreshold
    (the host's defaults, 16 and half of it, where unset)."""
    queues = orjson.loads((root / "host.json").read_bytes()).get("extensions", {}).get("queues", {})
    batch = int(queues.get("batchSize", 16))
    return batch + int(queues.get("newBatchThreshold", batch // 2))


@dataclass(frozen=True)
class RecordKind:
    """A family of simulator records archived in one scenario."""

    name: str
    count: int
    sessions: int
    participants: int
    floor_sample: int  # how many of them the CPU floor is measured on


@dataclass(frozen=True)
class LatencyRun:
    """One sustained rate of notifications, one per POST, for ``seconds``."""

    name: str
    rate: float  # notifications per second
    seconds: float


def make_latency_runs(seconds: float) -> tuple[LatencyRun, ...]:
    return (
        LatencyRun("20-per-s", 20.0, seconds),
        LatencyRun("100-per-s", 100.0, seconds),
        # sparse: the host has backed off between notifications (maxPollingInterval)
        LatencyRun("sparse", 0.5, seconds),
    )


@dataclass
class Config:
    quick: bool = False
    parts: tuple[str, ...] = PARTS
    logdir: Path = Path()
    # webhook: notifications per batch -> batches sent (after WEBHOOK_WARMUP unmeasured ones)
    webhook_batches: dict[int, int] = field(default_factory=dict)
    webhook_warmup: int = 5
    # archiver
    kinds: tuple[RecordKind, ...] = ()
    latencies_ms: tuple[int, ...] = (0, 100)
    paths: tuple[str, ...] = ("host", "inprocess")
    # In process: as many records at once as the host runs (host.json batchSize +
    # newBatchThreshold), so the two paths are comparable.
    concurrency: int = field(default_factory=lambda: host_concurrency())
    profile: bool = False
    # memory
    memory_sessions: int = 10_000
    memory_participants: int = 300
    # A burst of large meetings: a host batch (batchSize 32 + newBatchThreshold 16)
    memory_burst_records: int = 48
    memory_burst_sessions: int = 600
    # throttle
    throttle_records: int = 4000
    throttle_seconds: int = 60  # measured from 20 s (one full window) to here
    throttle_limit: int = 1500
    throttle_window: int = 20
    # reconcile: a 100,000-records-a-day tenant simulated at 1/reconcile_scale of its density
    reconcile_per_day: int = 100_000
    reconcile_scale: int = 10
    reconcile_hours: int = 6  # hours of start times seeded (the hourly pass covers 4 + now)
    # tabulate: archived records turned into the call-quality tables
    tabulate_records: int = 10_000
    # latency: notification -> blob committed at sustained rates (2 minutes; --quick: 20 s)
    latency_runs: tuple[LatencyRun, ...] = make_latency_runs(120.0)
    latency_graph_ms: int = 100
    latency_settle_s: float = 4.0  # idle host backs off to maxPollingInterval first
    # figures one part measured that a later part uses (latency -> cost)
    measured: dict[str, Any] = field(default_factory=dict)
    # usage logs: PSTN rows backfilled in process
    usage_rows: int = 5000

    @classmethod
    def make(cls, quick: bool, parts: tuple[str, ...], logdir: Path, **extra: object) -> Config:
        if quick:
            cfg = cls(
                quick=True,
                parts=parts,
                logdir=logdir,
                webhook_batches={1: 100, 10: 50, 100: 30},
                kinds=(
                    RecordKind("small", 200, 5, 3, 100),
                    RecordKind("large", 20, 300, 150, 20),
                ),
                throttle_records=3000,
                throttle_seconds=40,
                memory_burst_records=16,
                memory_burst_sessions=300,
                reconcile_scale=20,
                tabulate_records=2000,
                latency_runs=make_latency_runs(20.0),
                usage_rows=2000,
            )
        else:
            cfg = cls(
                parts=parts,
                logdir=logdir,
                webhook_batches={1: 1500, 10: 400, 100: 150},
                kinds=(
                    RecordKind("small", 1000, 5, 3, 200),
                    RecordKind("large", 100, 300, 150, 50),
                ),
            )
        for key, value in extra.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg
