"""Webhook: batches of 1, 10 and 100 change notifications, answered and queued.

For each batch size, one request at a time (as one Graph delivery stream would send them):

- ``SDK direct`` (the floor): the same queue messages (the app's WorkItem JSON, base64, one
  message per record id) sent with the azure-storage-queue SDK straight to Azurite, each batch
  sent concurrently, batches one after another; no HTTP, no parsing.
- ``HTTP``: POST /api/notifications on devtools.host (aiohttp server + function_app.py, the
  queue trigger switched off so nothing drains the queue), from an aiohttp client.
- ``in-process``: function_app's ``notifications`` function called with a func.HttpRequest in
  this process, to show how much of the HTTP figure is the host's HTTP layer.

The three run in interleaved rounds (floor, HTTP, in-process, floor, ...) so that drift does
not favour one of them. Answer time is from sending the request to having read the whole
answer. Every answer must
be 202 with every id queued, and the queue must hold exactly the messages sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import azure.functions as func
import orjson
from azure.storage.queue import QueueClient as SyncQueueClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from bench.config import Config
from bench.report import PartResult, Row, percentile
from bench.services import CpuMeter, HostProcess, Stack, app_environ, create_queue, stack, unique
from devtools.graphsim.notifier import change_notification
from devtools.stack import disabled

P99_TARGET_MS = 300.0
THROUGHPUT_TARGET = 0.8
ROUNDS = 5


notification = change_notification


def batches(size: int, count: int, client_state: str) -> list[tuple[list[str], bytes]]:
    """``count`` batches of ``size`` fresh record ids: (ids, the notification POST body)."""
    out = []
    for _ in range(count):
        ids = [str(uuid.uuid4()) for _ in range(size)]
        body = orjson.dumps({"value": [notification(i, client_state) for i in ids]})
        out.append((ids, body))
    return out


def queue_messages(ids: list[str]) -> list[str]:
    """The messages the webhook queues for these ids (the app's own WorkItem JSON)."""
    from shared.messages import Source, WorkItem

    return [WorkItem.new(i, Source.NOTIFICATION).to_json() for i in ids]


def _summary(latencies_s: list[float], notifications: int, wall: float) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "requests": len(ms),
        "notifications": notifications,
        "wall_s": round(wall, 3),
        "per_s": round(notifications / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


async def _timed(
    work: list[Any], send: Callable[[Any], Awaitable[None]], meter: CpuMeter
) -> tuple[list[float], float]:
    """Send each item in turn; (answer times, wall time). The meter adds up over rounds."""
    latencies = []
    meter.start()
    t0 = time.perf_counter()
    for item in work:
        t = time.perf_counter()
        await send(item)
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    meter.stop()
    return latencies, wall


def _notifications_function() -> Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]:
    """function_app's HTTP function for /api/notifications, found as the host finds it."""
    import function_app

    for fn in function_app.app.get_functions():
        if fn.get_function_name() == "notifications":
            return fn.get_user_function()
    raise RuntimeError("function_app.py has no function named 'notifications'")


async def _measure(st: Stack, cfg: Config, host: HostProcess, queue: str) -> dict[str, Any]:
    from shared.runtime import reset_runtime

    results: dict[str, Any] = {}
    cpu: dict[str, Any] = {}
    sync_queue = SyncQueueClient.from_connection_string(st.conn, queue)
    sdk = QueueClient.from_connection_string(
        st.conn, queue, message_encode_policy=TextBase64EncodePolicy()
    )
    handler = _notifications_function()
    url = f"{host.url}/api/notifications"
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session, sdk:

        def check_and_clear(expected: int, what: str) -> None:
            depth = sync_queue.get_queue_properties().approximate_message_count
            if depth != expected:
                raise RuntimeError(f"{what}: queue holds {depth} messages, expected {expected}")
            sync_queue.clear_messages()

        async def direct(messages: list[str]) -> None:
            await asyncio.gather(*(sdk.send_message(m) for m in messages))

        async def post(item: tuple[list[str], bytes]) -> None:
            async with session.post(url, data=item[1], headers=headers) as response:
                body = await response.read()
                if response.status != 202 or orjson.loads(body)["queued"] != len(item[0]):
                    raise RuntimeError(f"webhook answered {response.status}: {body[:200]!r}")

        async def call(item: tuple[list[str], bytes]) -> None:
            req = func.HttpRequest(method="POST", url=url, headers=headers, params={}, body=item[1])
            response = await handler(req)
            body = response.get_body()
            if response.status_code != 202 or orjson.loads(body)["queued"] != len(item[0]):
                raise RuntimeError(f"handler answered {response.status_code}: {body[:200]!r}")

        # (name, how one batch is sent, its work item from (ids, body), which processes count)
        variants: list[tuple[str, Callable[[Any], Awaitable[None]], Callable, dict]] = [
            ("sdk_direct", direct, lambda ids, body: queue_messages(ids), st.pids()),
            ("http", post, lambda ids, body: (ids, body), {**st.pids(), "host": host.pid}),
            ("inprocess", call, lambda ids, body: (ids, body), st.pids()),
        ]
        names = {"sdk_direct": "SDK direct", "http": "HTTP via host", "inprocess": "in-process"}
        for size, count in cfg.webhook_batches.items():
            # Interleaved rounds (floor, HTTP, in-process, floor, ...), so that drift in the
            # machine or in Azurite's state does not favour whichever variant runs first.
            rounds = min(ROUNDS, count)
            meters = {name: CpuMeter(pids) for name, _, _, pids in variants}
            lat: dict[str, list[float]] = {name: [] for name, *_ in variants}
            wall = dict.fromkeys(lat, 0.0)
            for name, send, make, _ in variants:  # warm-up: connections, runtime, token
                for ids, body in batches(size, cfg.webhook_warmup, st.client_state):
                    await send(make(ids, body))
                check_and_clear(size * cfg.webhook_warmup, f"{name} warm-up")
            for r in range(rounds):
                n = count // rounds + (1 if r < count % rounds else 0)
                for name, send, make, _ in variants:
                    work = [make(ids, body) for ids, body in batches(size, n, st.client_state)]
                    got, took = await _timed(work, send, meters[name])
                    lat[name] += got
                    wall[name] += took
                    check_and_clear(size * n, names[name])
            results[str(size)] = {
                name: _summary(lat[name], size * count, wall[name]) for name in lat
            }
            for name, meter in meters.items():
                cpu[f"batch {size}: {names[name]}"] = meter.as_dict()
    sync_queue.close()
    await reset_runtime()
    return {"batches": results, "cpu": cpu}


def _rows(details: dict[str, Any]) -> list[Row]:
    rows = []
    for size, res in details["batches"].items():
        floor, http, local = res["sdk_direct"], res["http"], res["inprocess"]
        n = int(size)
        label = f"batch of {n}"
        rows.append(
            Row(
                "webhook",
                f"webhook HTTP, {label}: p50 answer",
                http["p50_ms"],
                "ms",
                floor["p50_ms"],
                "SDK direct",
                ratio=http["p50_ms"] / floor["p50_ms"],
            )
        )
        p99_target = n == 100
        rows.append(
            Row(
                "webhook",
                f"webhook HTTP, {label}: p99 answer",
                http["p99_ms"],
                "ms",
                floor["p99_ms"],
                "SDK direct",
                target=f"< {P99_TARGET_MS:.0f} ms" if p99_target else "",
                ratio=http["p99_ms"] / floor["p99_ms"],
                met=http["p99_ms"] < P99_TARGET_MS if p99_target else None,
            )
        )
        ratio = http["per_s"] / floor["per_s"]
        rows.append(
            Row(
                "webhook",
                f"webhook HTTP, {label}: notifications queued/s",
                http["per_s"],
                "/s",
                floor["per_s"],
                "SDK direct",
                target=f"≥ {THROUGHPUT_TARGET:.0%} of floor",
                ratio=ratio,
                met=ratio >= THROUGHPUT_TARGET,
            )
        )
        rows.append(
            Row(
                "webhook",
                f"webhook in-process, {label}: notifications queued/s",
                local["per_s"],
                "/s",
                floor["per_s"],
                "SDK direct",
                ratio=local["per_s"] / floor["per_s"],
                note=f"p50 {local['p50_ms']:.1f} ms, p99 {local['p99_ms']:.1f} ms",
            )
        )
    return rows


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("webhook")
    with stack(with_sim=False) as st:
        queue = unique("wq")
        env = st.app_env(queue, unique("wc"))
        create_queue(st.conn, queue)
        # Only the webhook runs: the queue trigger would drain (and race) the measured queue.
        host = HostProcess(env, cfg.logdir / "webhook-host.log", disabled("archive_call_record"))
        with host, app_environ(env):
            log(f"webhook: host on {host.url}; batches {cfg.webhook_batches}")
            part.details = asyncio.run(_measure(st, cfg, host, queue))
    part.rows = _rows(part.details)
    return part
