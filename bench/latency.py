"""End-to-end latency: a change notification POSTed to the webhook until its blob is committed.

For each sustained rate (20 and 100 notifications/s for 2 minutes; 20 s with --quick, plus a
sparse 0.5/s run that shows what the queue's polling back-off costs), against small records
(5 sessions, 3 participants) and a simulated Graph latency of 100 ms:

- ``host``: notifications (one per POST, as Graph sends them when traffic is light) go to
  ``/api/notifications`` on a fixed schedule (open loop: a POST is sent at its time whether or
  not the earlier ones were answered). Two devtools.host processes run the app as Flex
  Consumption does, on separate instances: one serves the HTTP functions (the webhook queues
  each id), the other runs the queue trigger, polling with host.json's settings.
- ``floor``: the same kind of records at the same rate, fetched and written by
  ``archive_record`` in this process with no queue in between (the same code and clients).

Commit time is the blob's own, taken from the storage side rather than from any log line:
Azurite makes a blob's ETag from the commit time in milliseconds times a random integer in
[70000, 100000] (node_modules/azurite/dist/src/common/utils/utils.js, ``newEtag``), so the
factor that divides the ETag exactly and lands the time within minutes of the POST gives the
commit time back, to the millisecond. Azurite and this process share the machine's clock.
(Last-Modified would also do, but it has one-second resolution.)

What dominates the host figure is how the queue is polled: after an empty poll the host
waits 0.1 s, doubling after every further empty poll up to host.json's maxPollingInterval,
and goes back to 0.1 s as soon as a poll finds messages. At a sustained rate the host rarely
backs off; when notifications are sparse a message waits on average half the current
interval. The table reports the setting beside the figures.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from azure.storage.blob.aio import ContainerClient

from bench.config import Config, LatencyRun
from bench.report import PartResult, Row, percentile
from bench.services import (
    ROOT,
    CpuMeter,
    HostProcess,
    Stack,
    app_environ,
    create_container,
    create_queue,
    stack,
    unique,
)
from devtools.graphsim.notifier import change_notification

SESSIONS, PARTICIPANTS = 5, 3  # the archiver bench's "small" record
ETAG_FACTOR = (70_000, 100_000)  # Azurite's newEtag(): Date.getTime() * randomInt(70000, 100001)


# --------------------------------------------------------------------------------- clocks


def commit_ms_from_etag(etag: str, near_ms: float, window_ms: float = 900_000.0) -> float | None:
    """The commit time (Unix ms) hidden in an Azurite ETag, or None when it cannot be told.

    ``near_ms`` is a time shortly before the commit (when the work was started). The ETag is
    ``t * r`` with ``r`` in [70000, 100000]; ``t`` in [near - 60 s, near + window] leaves a
    range of ``r`` narrower than one integer for any window under an hour. The product is a
    JavaScript double (about 1.8e17, past 2**53), so it is exact only to its last bits: ``r``
    must divide it to within one unit in the last place, which a wrong ``r`` does about once
    in a thousand.
    """
    try:
        value = int(etag.strip('"').removeprefix("0x"), 16)
    except ValueError:
        return None
    ulp = 2 ** max(0, value.bit_length() - 53)
    lo_t, hi_t = near_ms - 60_000, near_ms + window_ms
    lo_r = max(ETAG_FACTOR[0], math.ceil(value / hi_t))
    hi_r = min(ETAG_FACTOR[1], math.floor(value / lo_t))
    found = [r for r in range(lo_r, hi_r + 1) if abs(value - r * round(value / r)) <= ulp]
    return float(round(value / found[0])) if len(found) == 1 else None


def read_host_json(root: Path = ROOT) -> dict[str, Any]:
    return orjson.loads((root / "host.json").read_bytes())


def polling_settings(host_json: dict[str, Any]) -> dict[str, Any]:
    """host.json's queue settings that decide how soon a queued id is picked up."""
    from devtools.host import QueueOptions

    q = QueueOptions.from_host_json(host_json)
    return {
        "batch_size": q.batch_size,
        "new_batch_threshold": q.new_batch_threshold,
        "max_polling_interval_s": q.max_polling_interval,
        "per_instance_concurrency": q.batch_size + q.new_batch_threshold,
    }


def rss_peak_mb(pid: int | None) -> float | None:
    """VmHWM (peak resident set) of a live process, in MB."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def import_cost(runs: int = 3) -> dict[str, float]:
    """CPU and wall time of importing function_app.py in a fresh interpreter (the least a
    cold start does before the first answer), best of ``runs``."""
    import resource
    import subprocess
    import sys

    cpu, wall = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, check=True)
        wall.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"cpu_s": round(min(cpu), 3), "wall_s": round(min(wall), 3)}


# --------------------------------------------------------------------------------- runs


def create_records(st: Stack, count: int) -> list[str]:
    assert st.sim is not None
    return [
        st.sim.client.create_record(sessions=SESSIONS, participants=PARTICIPANTS, notify=False)[
            "id"
        ]
        for _ in range(count)
    ]


async def commit_times(conn: str, container: str, started: dict[str, float]) -> dict[str, Any]:
    """Per record id, the commit time from its blob's ETag; and the blobs' sizes."""
    client = ContainerClient.from_connection_string(conn, container)
    commits: dict[str, float] = {}
    sizes: list[int] = []
    undecoded = 0
    async with client:
        async for blob in client.list_blobs():
            rid = blob.name.split("/")[3]
            if rid not in started:
                continue
            sizes.append(int(blob.size or 0))
            t = commit_ms_from_etag(str(blob.etag), started[rid])
            if t is None:
                undecoded += 1
                continue
            commits[rid] = t
    return {"commits": commits, "sizes": sizes, "undecoded": undecoded}


async def count_blobs(conn: str, container: str) -> int:
    client = ContainerClient.from_connection_string(conn, container)
    async with client:
        return sum([1 async for _ in client.list_blobs()])


async def wait_for_blobs(
    conn: str, queue: str, container: str, expected: int, within_s: float
) -> int:
    """Wait until the queue is empty (a cheap call, whatever its length), then until every
    blob is listed: listing thousands of blobs every half second would load Azurite, which
    the host is still using."""
    from azure.storage.queue.aio import QueueClient

    deadline = time.monotonic() + within_s
    async with QueueClient.from_connection_string(conn, queue) as q:
        while time.monotonic() < deadline:
            if (await q.get_queue_properties()).approximate_message_count == 0:
                break
            await asyncio.sleep(0.5)
    found = 0
    while time.monotonic() < deadline:
        found = await count_blobs(conn, container)
        if found >= expected:
            break
        await asyncio.sleep(1.0)
    return found


def summarise(
    started: dict[str, float], commits: dict[str, float], wall: float, extra: dict[str, Any]
) -> dict[str, Any]:
    ms = [commits[r] - started[r] for r in started if r in commits]
    out: dict[str, Any] = {
        "records": len(started),
        "committed": len(ms),
        "wall_s": round(wall, 3),
        **extra,
    }
    if ms:
        done = [r for r in started if r in commits]
        span_s = (max(commits[r] for r in done) - min(started[r] for r in done)) / 1000
        out["committed_per_s"] = round(len(done) / span_s, 2) if span_s > 0 else None
        out.update(
            p50_ms=round(percentile(ms, 50), 1),
            p95_ms=round(percentile(ms, 95), 1),
            p99_ms=round(percentile(ms, 99), 1),
            max_ms=round(max(ms), 1),
            mean_ms=round(sum(ms) / len(ms), 1),
        )
    return out


async def _send_paced(
    url: str, ids: list[str], rate: float, client_state: str
) -> tuple[dict[str, float], dict[str, int], list[float]]:
    """POST one notification per id at ``rate`` per second, open loop. Returns the send time
    of each id (Unix ms), the answers by status, and each POST's answer time (s)."""
    started: dict[str, float] = {}
    answers: dict[str, int] = {}
    answer_s: list[float] = []
    connector = aiohttp.TCPConnector(limit=256)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(rid: str) -> None:
            body = orjson.dumps({"value": [change_notification(rid, client_state)]})
            started[rid] = time.time() * 1000
            t = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    key = str(response.status)
            except aiohttp.ClientError as exc:
                key = type(exc).__name__
            answer_s.append(time.perf_counter() - t)
            answers[key] = answers.get(key, 0) + 1

        tasks = []
        t0 = time.perf_counter()
        for i, rid in enumerate(ids):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(rid)))
        await asyncio.gather(*tasks)
    return started, answers, answer_s


def hosted(st: Stack, cfg: Config, run: LatencyRun, ids: list[str]) -> dict[str, Any]:
    """Two devtools.host processes, as Flex Consumption runs the app: the HTTP functions on
    one instance (the queue trigger off) and the queue function on another (the timers off in
    both). The webhook host takes the POSTs; the worker host polls the queue."""
    queue, container = unique("q"), unique("c")
    create_queue(st.conn, queue)
    create_container(st.conn, container)
    env = st.app_env(queue, container)
    web_log = cfg.logdir / f"latency-{run.name}-webhook.log"
    work_log = cfg.logdir / f"latency-{run.name}-worker.log"
    web = HostProcess(env, web_log, {"AzureWebJobs.archive_call_record.Disabled": "true"})
    worker = HostProcess(env, work_log)
    try:
        web.start()
        worker.start()
        # One record first, unmeasured, so both processes have built their clients and hold
        # a token: a warm instance (the cold start is reported apart, as import_cost).
        warm = create_records(st, 1)
        asyncio.run(_send_paced(f"{web.url}/api/notifications", warm, 1.0, st.client_state))
        asyncio.run(wait_for_blobs(st.conn, queue, container, 1, within_s=60))
        # Then let the idle worker back off to its longest polling interval, as one waiting
        # for the next call would be; a sustained rate brings it back to 0.1 s within a second.
        time.sleep(cfg.latency_settle_s)
        meter = CpuMeter({**st.pids(), "webhook": web.pid, "worker": worker.pid}).start()
        t0 = time.perf_counter()
        url = f"{web.url}/api/notifications"
        started, answers, answer_s = asyncio.run(_send_paced(url, ids, run.rate, st.client_state))
        found = asyncio.run(
            wait_for_blobs(st.conn, queue, container, len(ids) + 1, within_s=60 + len(ids) / 10)
        )
        wall = time.perf_counter() - t0
        cpu = meter.stop()
        peak = rss_peak_mb(worker.pid)
        web_peak = rss_peak_mb(web.pid)
        worker.poll_log()
        web.poll_log()
        failed = worker.failed + web.failed
    finally:
        web.stop()
        worker.stop()
    got = asyncio.run(commit_times(st.conn, container, started))
    answer_ms = [x * 1000 for x in answer_s]
    host_cpu = cpu.get("cpu_webhook_s", 0.0) + cpu.get("cpu_worker_s", 0.0)
    return summarise(
        started,
        got["commits"],
        wall,
        {
            "answers": answers,
            "answer_p50_ms": round(percentile(answer_ms, 50), 2),
            "answer_p99_ms": round(percentile(answer_ms, 99), 2),
            "answer_mean_ms": round(sum(answer_ms) / len(answer_ms), 2),
            "blobs_found": found - 1,  # less the warm-up record
            "etags_undecoded": got["undecoded"],
            "mean_blob_bytes": round(sum(got["sizes"]) / len(got["sizes"]))
            if got["sizes"]
            else None,
            "failed_invocations": failed,
            "host_cpu_ms_per_record": round(host_cpu * 1000 / max(found - 1, 1), 3),
            "webhook_cpu_ms_per_record": round(
                cpu.get("cpu_webhook_s", 0.0) * 1000 / max(found - 1, 1), 3
            ),
            "worker_cpu_ms_per_record": round(
                cpu.get("cpu_worker_s", 0.0) * 1000 / max(found - 1, 1), 3
            ),
            "host_peak_rss_mb": round(peak, 1) if peak else None,
            "webhook_peak_rss_mb": round(web_peak, 1) if web_peak else None,
            "cpu": cpu,
            "log": f"{web_log}, {work_log}",
        },
    )


async def _floor(st: Stack, run: LatencyRun, ids: list[str]) -> dict[str, Any]:
    from shared.archiver import archive_record
    from shared.messages import Source, WorkItem
    from shared.runtime import build_runtime
    from shared.settings import load_settings

    container = unique("f")
    env = st.app_env(unique("q"), container)
    started: dict[str, float] = {}
    exec_ms: list[float] = []
    errors: list[str] = []
    with app_environ(env):
        rt = build_runtime(load_settings(env))
        await rt.archive.container.create_container()
        for rid in create_records(st, 1):  # unmeasured: clients built, token held
            await archive_record(rt, WorkItem.new(rid, Source.NOTIFICATION))
        meter = CpuMeter(st.pids()).start()
        t0 = time.perf_counter()

        async def one(rid: str) -> None:
            started[rid] = time.time() * 1000
            try:
                exec_ms.append(
                    (await archive_record(rt, WorkItem.new(rid, Source.NOTIFICATION))).ms
                )
            except Exception as exc:  # reported, and the record shows as not committed
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        tasks = []
        for i, rid in enumerate(ids):
            delay = t0 + i / run.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(rid)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        cpu = meter.stop()
        await rt.close()
    got = await commit_times(st.conn, container, started)
    return summarise(
        started,
        got["commits"],
        wall,
        {
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "etags_undecoded": got["undecoded"],
            "exec_ms_p50": round(percentile(exec_ms, 50), 1) if exec_ms else None,
            "exec_ms_mean": round(sum(exec_ms) / len(exec_ms), 1) if exec_ms else None,
            "cpu_ms_per_record": round(cpu["cpu_bench_s"] * 1000 / max(len(ids), 1), 3),
            "cpu": cpu,
        },
    )


# --------------------------------------------------------------------------------- rows


def _problem(res: dict[str, Any], rate: float | None = None) -> str:
    problems = []
    kept = res.get("committed_per_s")
    if rate and kept and res.get("records", 0) > 20 and kept < 0.9 * rate:
        problems.append(
            f"committed {kept:g}/s of {rate:g}/s offered: a backlog built up, so the figures "
            "are queueing behind it (see the CPU table: the machine's cores were the limit)"
        )
    if res.get("committed", 0) < res.get("records", 0):
        problems.append(f"{res.get('committed', 0)} of {res['records']} commits measured")
    if res.get("etags_undecoded"):
        problems.append(f"{res['etags_undecoded']} ETags not decoded")
    if res.get("errors"):
        problems.append(f"{res['errors']} errors (first: {res.get('first_error')})")
    if res.get("failed_invocations"):
        problems.append(f"{res['failed_invocations']} failed invocations (see {res.get('log')})")
    bad = {k: v for k, v in (res.get("answers") or {}).items() if k != "202"}
    if bad:
        problems.append(f"webhook answers other than 202: {bad}")
    return "; ".join(problems)


def _rows(details: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    poll = details["polling"]
    for name, sc in details["runs"].items():
        host, floor = sc["host"], sc["floor"]
        rate = sc["rate"]
        note = "see warnings" if (_problem(host, rate) or _problem(floor, rate)) else ""
        label = f"latency {sc['label']}"
        for q in ("p50", "p95", "p99"):
            value, base = host.get(f"{q}_ms"), floor.get(f"{q}_ms")
            rows.append(
                Row(
                    "latency",
                    f"{label}: notification → blob committed, {q}",
                    value,
                    "ms",
                    base,
                    "no queue",
                    ratio=value / base if value and base else None,
                    note=note,
                )
            )
        rows.append(
            Row(
                "latency",
                f"{label}: records committed per second",
                host.get("committed_per_s"),
                "/s",
                floor.get("committed_per_s"),
                "no queue",
                target=f"= {rate:g}/s offered",
                ratio=host["committed_per_s"] / rate if host.get("committed_per_s") else None,
                met=bool(host.get("committed_per_s")) and host["committed_per_s"] >= 0.9 * rate,
                note=note,
            )
        )
        rows.append(
            Row(
                "latency",
                f"{label}: CPU per record, webhook + worker processes (worker peak RSS "
                f"{host.get('host_peak_rss_mb')} MB)",
                host.get("host_cpu_ms_per_record"),
                "ms",
                floor.get("cpu_ms_per_record"),
                "in-process",
                note=note,
            )
        )
        del name
    cold = details.get("import")
    if cold:
        rows.append(
            Row(
                "latency",
                "cold start: importing function_app.py in a fresh interpreter, CPU",
                cold["cpu_s"] * 1000,
                "ms",
                floor_label=f"on a 0.25-core (512 MB) instance about {cold['cpu_s'] * 4:.1f} s; "
                "Graph wants an answer within 3 s",
            )
        )
    rows.append(
        Row(
            "latency",
            f"queue polling (host.json): maxPollingInterval; batchSize {poll['batch_size']} "
            f"+ newBatchThreshold {poll['new_batch_threshold']} per instance",
            poll["max_polling_interval_s"] * 1000,
            "ms",
            floor_label="back-off from 0.1 s, doubling per empty poll",
        )
    )
    return rows


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("latency")
    details: dict[str, Any] = {
        "polling": polling_settings(read_host_json()),
        "graph_latency_ms": cfg.latency_graph_ms,
        "record": {"sessions": SESSIONS, "participants": PARTICIPANTS},
        "runs": {},
        "cpu": {},
        # the machine is shared: how busy it was (1, 5, 15 minutes) when each run ended
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "load_average_after": {},
    }
    with stack() as st:
        assert st.sim is not None
        st.sim.client.set_faults(reset=True, latency_ms=cfg.latency_graph_ms)
        for run_ in cfg.latency_runs:
            count = max(1, round(run_.rate * run_.seconds))
            t = time.perf_counter()
            ids = create_records(st, count)
            floor_ids = create_records(st, count)
            log(f"latency: {run_.name}: {count} records ready in {time.perf_counter() - t:.0f}s")
            host = hosted(st, cfg, run_, ids)
            log(
                f"latency: {run_.name} host: p50 {host.get('p50_ms')} ms, "
                f"p99 {host.get('p99_ms')} ms ({host['committed']}/{count})"
            )
            floor = asyncio.run(_floor(st, run_, floor_ids))
            log(
                f"latency: {run_.name} floor: p50 {floor.get('p50_ms')} ms, "
                f"p99 {floor.get('p99_ms')} ms ({floor['committed']}/{count})"
            )
            details["runs"][run_.name] = {
                "label": f"{run_.rate:g}/s for {run_.seconds:g} s",
                "rate": run_.rate,
                "seconds": run_.seconds,
                "host": host,
                "floor": floor,
            }
            details["load_average_after"][run_.name] = [round(x, 2) for x in os.getloadavg()]
            details["cpu"][f"{run_.name} host"] = host["cpu"]
            details["cpu"][f"{run_.name} floor"] = floor["cpu"]
            for side, res in (("host", host), ("floor", floor)):
                problem = _problem(res, run_.rate)
                if problem:
                    part.warnings.append(f"latency {run_.name} {side}: {problem}")
    details["import"] = import_cost()
    part.details = details
    part.rows = _rows(details)
    cfg.measured["latency"] = details
    return part
