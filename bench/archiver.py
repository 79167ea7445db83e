"""Archiver: records/s, Graph requests and token requests per run, CPU per record.

Scenarios: each record kind (the issue's 1,000 small records of 5 sessions, and 100 large
ones of 300 sessions = 5 session pages, 150 participants = 2 participants_v2 pages) at each
simulated Graph latency (0 and 100 ms), along two paths:

- ``host``: the real path. devtools.host runs function_app.py and polls the queue with
  host.json's batch settings; every record id is queued (the app's WorkItem message) and the
  clock runs from the first enqueue until the host's counters (``/_host/metrics``) show an
  invocation per record and the archive lists a blob per record.
  CPU is the host process's (from /proc/<pid>/stat).
- ``in-process``: ``shared.archiver.archive_record`` over every record with one Runtime
  (``build_runtime``), as many at once as the host would run (batchSize + newBatchThreshold),
  in this process; CPU is this process's. Shows where time goes without the queue.

Figures beside them:
- Graph requests per record against the minimum for the sim's record sizes: the record with
  its first sessions page, every further sessions page (60 a page) and every participants_v2
  page (130 a page, at least one), and the version check before the commit:
  ``1 + (ceil(s/60) - 1) + max(1, ceil(p/130)) + 1``.
- token requests for the whole run (target: 1).
- CPU ms per record against the floor: orjson.loads + orjson.dumps of the same record's JSON
  plus one upload of those bytes to Azurite (async SDK, the same concurrency), measured here.
- with latency: records/s against 10x what fetching one record at a time allows, i.e.
  10 / (latency x the longest chain of requests that must be made one after another: the
  longer of the sessions and participants_v2 page chains, then the version check). Records
  of more than one page are fetched at most ARCHIVE_MAX_LARGE_FETCHES at a time per
  instance (a memory bound), so for them the target is that many times, not 10x.
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import io
import math
import pstats
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from azure.storage.blob import ContainerClient as SyncContainerClient
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from bench.config import Config, RecordKind
from bench.report import PartResult, Row, percentile
from bench.services import (
    CpuMeter,
    HostProcess,
    Stack,
    app_environ,
    create_container,
    create_queue,
    stack,
    unique,
)

SESSIONS_PAGE = 60
PARTICIPANTS_PAGE = 130
READ_KINDS = ("record", "sessions_page", "participants_page")
LATENCY_SPEEDUP_TARGET = 10.0
CPU_FLOOR_TARGET = 2.0


def minimum_requests(sessions: int, participants: int) -> int:
    return (
        1
        + (math.ceil(sessions / SESSIONS_PAGE) - 1)
        + max(1, math.ceil(participants / PARTICIPANTS_PAGE))
        + 1  # the version check before the commit (shared/recordfetch.py)
    )


def sequential_requests(sessions: int, participants: int) -> int:
    """The longest chain of requests that can only be made one after another (each next link
    comes from the page before, and the version check follows every page): the longer page
    chain, sessions or participants_v2, and the version check. The app reads the two chains
    one after the other (the blob is written front to back), so it makes one chain more."""
    pages = max(
        math.ceil(sessions / SESSIONS_PAGE), max(1, math.ceil(participants / PARTICIPANTS_PAGE))
    )
    return pages + 1


def speedup_target(sessions: int) -> float:
    """How many records at once the app allows (capped at the 10x target): a record of more
    than one sessions page waits for one of ARCHIVE_MAX_LARGE_FETCHES slots."""
    from shared.settings import Settings

    if sessions <= SESSIONS_PAGE:
        return LATENCY_SPEEDUP_TARGET
    bound = next(f for f in dataclasses.fields(Settings) if f.name == "max_large_fetches")
    return min(LATENCY_SPEEDUP_TARGET, float(bound.default))  # pyright: ignore[reportArgumentType]


def graph_counts(stats: dict[str, Any]) -> dict[str, int]:
    """Graph read requests, and their answers by status, from the simulator's counters."""
    requests = sum(int(stats["requests"].get(k, 0)) for k in READ_KINDS)
    by_status: dict[str, int] = {}
    for kind in READ_KINDS:
        for status, n in stats.get("responses_by_kind", {}).get(kind, {}).items():
            by_status[status] = by_status.get(status, 0) + int(n)
    return {
        "requests": requests,
        "tokens": int(stats["token_requests"]),
        **{f"status_{k}": v for k, v in sorted(by_status.items())},
        **{f"{k}_requests": int(stats["requests"].get(k, 0)) for k in READ_KINDS},
    }


def create_records(st: Stack, kind: RecordKind) -> list[str]:
    assert st.sim is not None
    return [
        st.sim.client.create_record(
            sessions=kind.sessions, participants=kind.participants, notify=False
        )["id"]
        for _ in range(kind.count)
    ]


def verify(st: Stack, container: str, ids: list[str]) -> dict[str, Any]:
    """Every record has its blob, and one of them (the last) is exactly the expected document."""
    assert st.sim is not None
    client = SyncContainerClient.from_connection_string(st.conn, container)
    names = [b.name for b in client.list_blobs()]
    found = {n.split("/")[3] for n in names}
    missing = [i for i in ids if i not in found]
    sample_ok = None
    if ids and ids[-1] in found:
        name = next(n for n in names if n.split("/")[3] == ids[-1])
        sample_ok = orjson.loads(client.download_blob(name).readall()) == st.sim.client.expected(
            ids[-1]
        )
    client.close()
    return {"blobs": len(names), "missing": len(missing), "sample_matches_expected": sample_ok}


# ---------------------------------------------------------------------------------- floor


async def cpu_floor(st: Stack, kind: RecordKind, ids: list[str], concurrency: int) -> dict:
    """CPU per record of the least work archiving needs: parse and serialise the record's
    JSON once (orjson) and upload those bytes once (async SDK)."""
    assert st.sim is not None
    sample = ids[: kind.floor_sample]
    data = [orjson.dumps(st.sim.client.expected(rid)) for rid in sample]
    c0 = time.process_time()
    for raw in data:
        orjson.dumps(orjson.loads(raw))
    c_json = time.process_time() - c0

    container = ContainerClient.from_connection_string(st.conn, unique("floor"))
    await container.create_container()
    sem = asyncio.Semaphore(concurrency)
    settings = ContentSettings(content_type="application/json")

    async def upload(i: int, raw: bytes) -> None:
        async with sem:
            await container.upload_blob(f"{i}.json", raw, content_settings=settings)

    await upload(-1, data[0])  # connection set up outside the measurement
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(upload(i, raw) for i, raw in enumerate(data)))
    c_upload, wall = time.process_time() - c0, time.perf_counter() - t0
    await container.delete_container()
    await container.close()
    n = len(data)
    return {
        "records": n,
        "bytes_per_record": round(sum(map(len, data)) / n),
        "json_ms_per_record": round(c_json * 1000 / n, 3),
        "upload_ms_per_record": round(c_upload * 1000 / n, 3),
        "cpu_ms_per_record": round((c_json + c_upload) * 1000 / n, 3),
        "upload_wall_s": round(wall, 3),
    }


# ---------------------------------------------------------------------------------- paths


async def _archive_all(rt: Any, ids: list[str], concurrency: int) -> list[Any]:
    from shared.archiver import archive_record
    from shared.messages import Source, WorkItem

    sem = asyncio.Semaphore(concurrency)

    async def one(rid: str) -> Any:
        async with sem:
            return await archive_record(rt, WorkItem.new(rid, Source.NOTIFICATION))

    return await asyncio.gather(*(one(r) for r in ids), return_exceptions=True)


async def in_process(st: Stack, ids: list[str], cfg: Config, profile: bool = False) -> dict:
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    assert st.sim is not None
    container = unique("c")
    env = st.app_env(unique("q"), container)
    with app_environ(env):
        rt = build_runtime(load_settings(env))
        await rt.archive.container.create_container()
        st.sim.client.reset_stats()
        profiler = cProfile.Profile() if profile else None
        meter = CpuMeter(st.pids()).start()
        if profiler:
            profiler.enable()
        results = await _archive_all(rt, ids, cfg.concurrency)
        if profiler:
            profiler.disable()
        cpu = meter.stop()
        stats = st.sim.client.stats()
        await rt.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    took = [r.ms for r in results if not isinstance(r, BaseException)]
    out: dict[str, Any] = {
        "records": len(ids),
        "archived": sum(1 for r in results if not isinstance(r, BaseException) and r.written),
        "errors": len(errors),
        "first_error": repr(errors[0])[:300] if errors else None,
        "seconds": cpu["wall_s"],
        "records_per_s": round(len(ids) / cpu["wall_s"], 2),
        "cpu_ms_per_record": round(cpu["cpu_bench_s"] * 1000 / len(ids), 3),
        # each archive_record call, fetch to upload (Archived.ms), with the others running
        "record_ms_p50": round(percentile(took, 50), 1) if took else None,
        "record_ms_p90": round(percentile(took, 90), 1) if took else None,
        "graph": graph_counts(stats),
        "cpu": cpu,
    }
    if profiler:
        text = io.StringIO()
        p = pstats.Stats(profiler, stream=text)
        p.sort_stats("tottime").print_stats(30)
        p.sort_stats("cumulative").print_stats(40)
        out["profile"] = text.getvalue()
    else:
        out["verify"] = verify(st, container, ids)
    return out


async def enqueue(conn: str, queue: str, ids: list[str]) -> None:
    from shared.messages import Source, WorkItem

    client = QueueClient.from_connection_string(
        conn, queue, message_encode_policy=TextBase64EncodePolicy()
    )
    async with client:
        for i in range(0, len(ids), 64):
            chunk = ids[i : i + 64]
            await asyncio.gather(
                *(
                    client.send_message(WorkItem.new(r, Source.NOTIFICATION).to_json())
                    for r in chunk
                )
            )


def start_host(st: Stack, cfg: Config, name: str) -> tuple[HostProcess, str, str]:
    """A host with a fresh queue and container, both created (Bicep creates them in Azure)."""
    queue, container = unique("q"), unique("c")
    create_queue(st.conn, queue)
    create_container(st.conn, container)
    host = HostProcess(st.app_env(queue, container), cfg.logdir / f"{name}.log").start()
    return host, queue, container


def hosted(st: Stack, ids: list[str], cfg: Config, name: str, timeout: float) -> dict:
    """Enqueue every id; the clock stops when every record has its blob."""
    assert st.sim is not None
    host, queue, container = start_host(st, cfg, name)
    try:
        st.sim.client.reset_stats()
        meter = CpuMeter({**st.pids(), "host": host.pid}).start()
        t0 = time.perf_counter()
        enqueued: list[float] = []

        def send() -> None:  # notifications keep arriving while the host works
            asyncio.run(enqueue(st.conn, queue, ids))
            enqueued.append(time.perf_counter() - t0)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        t_first = None
        deadline = t0 + timeout
        while True:
            # The counters are cheap to read; the archive is listed only once they say done.
            done = host.progress(list_archive=False)
            now = time.perf_counter()
            if done.invocations and t_first is None:
                t_first = now - t0
            if done.invocations >= len(ids) and (host.progress().archived or 0) >= len(ids):
                break
            if now > deadline or host.proc is None or host.proc.poll() is not None:
                break
            # 20 reads a second cost the host ~0.4 ms of CPU each (under 1% of a core).
            time.sleep(0.05 if done.invocations < len(ids) else 0.25)
        cpu = meter.stop()
        sender.join(timeout=60)
        t_enqueued = enqueued[0] if enqueued else math.nan
        stats = st.sim.client.stats()
        final = host.progress()
        archived, failed = final.archived or 0, final.failed
    finally:
        host.stop()
    elapsed = cpu["wall_s"]
    done = archived >= len(ids)
    out = {
        "records": len(ids),
        "archived": archived,
        "failed_invocations": failed,
        "complete": done,
        "seconds": elapsed,
        "enqueue_seconds": round(t_enqueued, 3),
        "first_archived_after_s": round(t_first, 3) if t_first is not None else None,
        "records_per_s": round(archived / elapsed, 2),
        "records_per_s_after_first": round((archived - 1) / (elapsed - t_first), 2)
        if t_first is not None and archived > 1 and elapsed > t_first
        else None,
        "cpu_ms_per_record": round(cpu["cpu_host_s"] * 1000 / max(archived, 1), 3),
        "graph": graph_counts(stats),
        "cpu": cpu,
        "verify": verify(st, container, ids),
        "log": str(host.log_path),
    }
    if not done:
        out["log_tail"] = host.tail(15)
    return out


# ---------------------------------------------------------------------------------- rows


def _problem(res: dict[str, Any]) -> str:
    """Why a scenario's figures are not to be trusted, or ""."""
    problems = []
    if res.get("errors"):
        problems.append(f"{res['errors']} records failed (first: {res['first_error']})")
    if res.get("complete") is False:
        problems.append(f"only {res['archived']} of {res['records']} archived before the timeout")
    if res.get("failed_invocations"):
        problems.append(f"{res['failed_invocations']} failed invocations (see {res['log']})")
    check = res.get("verify") or {}
    if check.get("missing"):
        problems.append(f"{check['missing']} blobs missing")
    if check.get("sample_matches_expected") is False:
        problems.append("an archived blob differs from the simulator's expected document")
    return "; ".join(problems)


def _rows(details: dict[str, Any]) -> list[Row]:
    rows = []
    for sc in details["scenarios"].values():
        kind, latency, path = sc["kind"], sc["latency_ms"], sc["path"]
        res, floor = sc["result"], details["floors"][kind]
        label = f"archiver {'host' if path == 'host' else 'in-process'}, {sc['label']}"
        n = res["records"]
        note = "INCOMPLETE, see warnings" if _problem(res) else ""
        # records/s: a target only with latency (10x one-at-a-time, or the large-fetch bound)
        if latency:
            one_at_a_time = 1000 / (latency * sc["sequential_requests"])
            speedup = sc["speedup_target"]
            target = speedup * one_at_a_time
            rows.append(
                Row(
                    "archiver",
                    f"{label}: records/s",
                    res["records_per_s"],
                    "/s",
                    one_at_a_time,
                    "one at a time",
                    target=f"≥ {target:.1f}/s ({speedup:g}x"
                    + ("" if speedup == LATENCY_SPEEDUP_TARGET else ", ARCHIVE_MAX_LARGE_FETCHES")
                    + ")",
                    ratio=res["records_per_s"] / one_at_a_time,
                    met=res["records_per_s"] >= target,
                    note=note,
                )
            )
        else:
            rows.append(
                Row("archiver", f"{label}: records/s", res["records_per_s"], "/s", note=note)
            )
        per_record = res["graph"]["requests"] / n
        minimum = sc["minimum_requests"] / n
        rows.append(
            Row(
                "archiver",
                f"{label}: Graph requests/record",
                per_record,
                "",
                minimum,
                "minimum",
                target="= minimum",
                ratio=per_record / minimum,
                met=res["graph"]["requests"] <= sc["minimum_requests"],
                note=note,
            )
        )
        tokens = res["graph"]["tokens"]
        rows.append(
            Row(
                "archiver",
                f"{label}: token requests (whole run)",
                tokens,
                "",
                target="1",
                ratio=tokens / 1,
                met=tokens == 1,
                note=note,
            )
        )
        cpu = res["cpu_ms_per_record"]
        rows.append(
            Row(
                "archiver",
                f"{label}: CPU ms/record",
                cpu,
                "ms",
                floor["cpu_ms_per_record"],
                "floor",
                target=f"≤ {CPU_FLOOR_TARGET:.0f}x floor",
                ratio=cpu / floor["cpu_ms_per_record"],
                met=cpu <= CPU_FLOOR_TARGET * floor["cpu_ms_per_record"],
                note=note,
            )
        )
    return rows


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("archiver")
    details: dict[str, Any] = {"scenarios": {}, "floors": {}, "kinds": {}, "cpu": {}}
    with stack() as st:
        assert st.sim is not None
        for kind in cfg.kinds:
            t = time.perf_counter()
            ids = create_records(st, kind)
            sizes = {r["id"]: r for r in st.sim.client.records()}
            minimum = sum(
                minimum_requests(sizes[i]["sessions"], sizes[i]["participants"]) for i in ids
            )
            chain = max(
                sequential_requests(sizes[i]["sessions"], sizes[i]["participants"]) for i in ids
            )
            floor = asyncio.run(cpu_floor(st, kind, ids, cfg.concurrency))
            details["floors"][kind.name] = floor
            details["kinds"][kind.name] = {
                "records": kind.count,
                "sessions": kind.sessions,
                "participants": kind.participants,
                "minimum_requests_per_record": minimum / len(ids),
                "sequential_requests": chain,
                "json_bytes_per_record": floor["bytes_per_record"],
            }
            log(
                f"archiver: {kind.count} {kind.name} records ready in "
                f"{time.perf_counter() - t:.1f}s; floor {floor['cpu_ms_per_record']:.2f} CPU ms/record"
            )
            for latency in cfg.latencies_ms:
                st.sim.client.set_faults(reset=True, latency_ms=latency)
                for path in cfg.paths:
                    label = f"{kind.count} {kind.name} ({kind.sessions} sessions), {latency} ms"
                    t = time.perf_counter()
                    if path == "host":
                        timeout = 120 + kind.count * (0.2 if kind.sessions > 60 else 0.05)
                        res = hosted(st, ids, cfg, f"archiver-{kind.name}-{latency}ms", timeout)
                    else:
                        res = asyncio.run(in_process(st, ids, cfg))
                    key = f"{kind.name}-{latency}ms-{path}"
                    details["scenarios"][key] = {
                        "kind": kind.name,
                        "latency_ms": latency,
                        "path": path,
                        "label": label,
                        "minimum_requests": minimum,
                        "sequential_requests": chain,
                        "speedup_target": speedup_target(kind.sessions),
                        "result": res,
                    }
                    details["cpu"][f"{key}"] = res["cpu"]
                    problem = _problem(res)
                    if problem:
                        part.warnings.append(f"archiver {key}: {problem}")
                        log(f"archiver: {key}: {problem}")
                    log(
                        f"archiver: {key}: {res['records_per_s']:.1f} records/s, "
                        f"{res['graph']['requests'] / len(ids):.2f} requests/record, "
                        f"{res['graph']['tokens']} token(s), {res['cpu_ms_per_record']:.2f} CPU "
                        f"ms/record"
                        + (
                            f", {res['record_ms_p50']:.0f} ms p50 per record"
                            if res.get("record_ms_p50")
                            else ""
                        )
                        + f" ({time.perf_counter() - t:.1f}s)"
                    )
                if cfg.profile:
                    sample = ids[: max(10, len(ids) // 3)]
                    res = asyncio.run(in_process(st, sample, cfg, profile=True))
                    out = cfg.logdir / f"profile-archiver-{kind.name}-{latency}ms.txt"
                    out.write_text(res.pop("profile"))
                    details.setdefault("profiles", {})[f"{kind.name}-{latency}ms"] = str(out)
                    log(f"archiver: profile of {len(sample)} {kind.name} records -> {out}")
    part.details = details
    part.rows = _rows(details)
    return part
