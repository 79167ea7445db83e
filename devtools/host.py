"""Run function_app.py locally the way `func start` does, without Core Tools.

Driven by the app's own metadata (``app.get_functions()`` and each function's binding JSON),
so a wrong route, queue name or parameter name fails here as it would when Azure indexes it:

- HTTP triggers under ``http://127.0.0.1:<port>/api/<route>`` (methods enforced; like
  ``func start``, function keys are not);
- queue triggers polled with host.json semantics: batchSize, newBatchThreshold,
  visibilityTimeout between retries, maxDequeueCount then ``<queue>-poison``, base64 bodies,
  polling backing off to maxPollingInterval;
- timer triggers on their NCRONTAB schedules, runOnStartup honoured;
- ``%SETTING%`` binding expressions, and ``AzureWebJobs.<name>.Disabled``;
- settings from the environment, then local.settings.json ``Values`` (environment wins);
- ``POST /admin/functions/{name}`` with ``{"input": "..."}``: runs a non-HTTP function now and
  answers 202 Accepted, as the Functions host does (locally without the master key, as
  ``func start``; learn.microsoft.com/azure/azure-functions/functions-manually-run-non-http):
  a timer gets a TimerRequest, a queue function a message whose body is the input;
- ``GET /_host/metrics``: what this host has done, as counters (invocations by function and
  outcome, HTTP answers by status, queue messages received, retried and moved to poison) and
  its state; tests, benchmarks and chaos runs read these, never the log, whose wording is
  for people.

Usage: ``python -m devtools.host [--port 7071] [--app-dir .]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import importlib
import inspect
import logging
import os
import re
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
from aiohttp import web
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue.aio import QueueClient

from shared.settings import SettingError, local_settings_env

log = logging.getLogger("host")

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")
# Like the Functions host: a message is leased for 10 minutes and the lease renewed at half
# time while the function runs, so a crashed host's messages come back after one lease.
# DEVHOST_QUEUE_LEASE_SECONDS shortens it (chaos runs kill the host on purpose).
QUEUE_LEASE_SECONDS = int(os.environ.get("DEVHOST_QUEUE_LEASE_SECONDS", "600"))
# The Functions host refuses larger request bodies with 413 before the function runs; the
# default is 100 MB, FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (bytes) changes it
# (learn.microsoft.com/azure/azure-functions/functions-app-settings).
MAX_REQUEST_BYTES = 100 * 1024 * 1024


def request_body_limit(settings: dict[str, str]) -> int:
    raw = settings.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT") or ""
    try:
        return int(raw) if raw.strip() else MAX_REQUEST_BYTES
    except ValueError:
        raise HostError(
            f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT={raw!r} is not a number of bytes"
        ) from None


class HostError(RuntimeError):
    """The app cannot be hosted as it is (what Azure would refuse at indexing or start-up)."""


# ---------------------------------------------------------------------------------------------
# counters

METRICS_PATH = "/_host/metrics"
ADMIN_FUNCTIONS_PATH = "/admin/functions/{name}"


class HostState(StrEnum):
    STARTING = "starting"  # listening for HTTP, functions not all started yet
    RUNNING = "running"
    STOPPING = "stopping"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # raised (or, for HTTP, returned something that is not a response)


class QueueEvent(StrEnum):
    RECEIVED = "received"  # handed to the function (or found undecodable)
    RETRIED = "retried"  # failed, made visible again for another try
    POISONED = "poisoned"  # failed on its last try, moved to <queue>-poison as it was


@dataclass
class HostMetrics:
    """What this host process has done since it started, counted where it happens."""

    state: HostState = HostState.STARTING
    invocations: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    http_responses: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    queue_messages: defaultdict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    def invoked(self, function: str, outcome: Outcome) -> None:
        self.invocations[function][outcome] += 1

    def as_dict(self) -> dict[str, Any]:
        def plain(counts: defaultdict[str, Counter[str]]) -> dict[str, dict[str, int]]:
            return {name: {str(k): n for k, n in c.items()} for name, c in counts.items()}

        return {
            "pid": os.getpid(),
            "state": str(self.state),
            "invocations": plain(self.invocations),
            "http_responses": plain(self.http_responses),
            "queue_messages": plain(self.queue_messages),
        }


# ---------------------------------------------------------------------------------------------
# settings and host.json


def load_local_settings(app_dir: Path) -> dict[str, str]:
    """Put local.settings.json Values into os.environ where the environment has no value
    (shared.settings.local_settings_env: the one merge rule the CLI uses too)."""
    try:
        settings = local_settings_env(app_dir)
    except SettingError as exc:
        raise HostError(str(exc)) from None
    os.environ.update(settings)
    return settings


_EXPR = re.compile(r"%([^%]+)%")


def resolve(value: str, settings: dict[str, str]) -> str:
    """Replace %NAME% binding expressions with their settings, as the host does."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if not settings.get(name):
            raise HostError(f"'%{name}%' does not resolve to a value (set {name})")
        return settings[name]

    return _EXPR.sub(sub, value)


def _timespan(value: str | None, default: float) -> float:
    if not value:
        return default
    parts = [float(p) for p in str(value).split(":")]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    base64: bool = True

    @classmethod
    def from_host_json(cls, host: dict[str, Any]) -> QueueOptions:
        q = host.get("extensions", {}).get("queues", {})
        batch = int(q.get("batchSize", 16))
        return cls(
            batch_size=batch,
            new_batch_threshold=int(q.get("newBatchThreshold", batch // 2)),
            max_dequeue_count=int(q.get("maxDequeueCount", 5)),
            visibility_timeout=_timespan(q.get("visibilityTimeout"), 0.0),
            max_polling_interval=_timespan(q.get("maxPollingInterval"), 60.0),
            base64=str(q.get("messageEncoding", "base64")).lower() == "base64",
        )


# ---------------------------------------------------------------------------------------------
# functions from the app's metadata


@dataclass
class Function:
    name: str
    handler: Callable[..., Any]
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]

    @property
    def trigger_arg(self) -> str:
        return str(self.trigger["name"])

    async def invoke(self, argument: Any) -> Any:
        """Call the handler as the worker does: async on the loop, sync in a thread."""
        kwargs = {self.trigger_arg: argument}
        if inspect.iscoroutinefunction(self.handler):
            return await self.handler(**kwargs)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.handler(**kwargs)
        )


def load_functions(app_dir: Path, settings: dict[str, str]) -> list[Function]:
    """Import function_app.py and check each function's bindings as Azure's indexing would."""
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module("function_app")
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if len(apps) != 1:
        raise HostError("function_app.py must define exactly one azure.functions.FunctionApp")
    functions = []
    for fn in apps[0].get_functions():
        meta = orjson.loads(fn.get_function_json())
        name = fn.get_function_name()
        bindings = meta["bindings"]
        triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
        if len(triggers) != 1:
            raise HostError(f"function {name}: needs exactly one trigger, has {len(triggers)}")
        trigger = triggers[0]
        if trigger["type"] not in SUPPORTED_TRIGGERS:
            raise HostError(f"function {name}: trigger {trigger['type']} is not supported here")
        for b in bindings:
            if b is not trigger and not (b["type"] == "http" and b["name"] == "$return"):
                raise HostError(f"function {name}: binding {b['type']} is not supported here")
        handler = fn.get_user_function()
        params = set(inspect.signature(handler).parameters)
        names = {b["name"] for b in bindings if b["name"] != "$return"}
        if params != names:
            raise HostError(
                f"function {name}: parameters {sorted(params)} do not match bindings {sorted(names)}"
            )
        # Expressions must resolve even for disabled functions: Azure checks them at start-up.
        for key, value in list(trigger.items()):
            if isinstance(value, str):
                trigger[key] = resolve(value, settings)
        if settings.get(f"AzureWebJobs.{name}.Disabled", "").lower() in ("true", "1"):
            log.info("%s is disabled by AzureWebJobs.%s.Disabled", name, name)
            continue
        functions.append(Function(str(name), handler, trigger, bindings))
    return functions


# ---------------------------------------------------------------------------------------------
# HTTP


def http_app(
    functions: list[Function],
    metrics: HostMetrics,
    route_prefix: str = "api",
    max_body: int = MAX_REQUEST_BYTES,
) -> web.Application:
    """One aiohttp route per HTTP function (unknown paths 404, wrong methods 405, bodies over
    ``max_body`` 413), and the host's counters at METRICS_PATH."""
    app = web.Application(client_max_size=max_body)
    for fn in functions:
        if fn.trigger["type"] != "httpTrigger":
            continue
        route = str(fn.trigger.get("route") or fn.name).strip("/")
        methods = [str(m).upper() for m in fn.trigger.get("methods") or []]
        app.router.add_route("*", f"/{route_prefix}/{route}", _http_handler(fn, methods, metrics))

    async def show_metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps(metrics.as_dict()), content_type="application/json")

    app.router.add_get(METRICS_PATH, show_metrics)
    app.router.add_post(ADMIN_FUNCTIONS_PATH, _admin_handler(functions, metrics, app))
    return app


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )


def _admin_handler(
    functions: list[Function], metrics: HostMetrics, app: web.Application
) -> Callable[..., Any]:
    """Run a non-HTTP function on demand. The invocation runs after the 202, as in Azure;
    its outcome is counted in the metrics like any other invocation."""
    by_name = {fn.name.lower(): fn for fn in functions if fn.trigger["type"] != "httpTrigger"}
    running: set[asyncio.Task[None]] = set()
    app.on_cleanup.append(lambda _app: _cancel_all(running))

    async def handle(request: web.Request) -> web.StreamResponse:
        fn = by_name.get(request.match_info["name"].lower())
        if fn is None:
            return _error(404, f"no non-HTTP function named {request.match_info['name']!r}")
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return _error(400, 'the body must be JSON: {"input": "<trigger input>"}')
        given = body.get("input", "") if isinstance(body, dict) else None
        if given is None or not isinstance(given, str | int | float | bool):
            return _error(400, '"input" must be a string, a number or a boolean')
        text = given if isinstance(given, str) else orjson.dumps(given).decode()
        task = asyncio.create_task(_fire(fn, metrics, _manual_input(fn, text)))
        running.add(task)
        task.add_done_callback(running.discard)
        return web.Response(status=202)

    return handle


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _manual_input(fn: Function, text: str) -> Any:
    if fn.trigger["type"] == "queueTrigger":
        now = datetime.now(UTC)
        return QueueMessage(id="manual", body=text.encode(), dequeue_count=1, insertion_time=now)
    return TimerRequest(past_due=False)


def _http_handler(fn: Function, methods: list[str], metrics: HostMetrics) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = await respond(request)
        metrics.http_responses[fn.name][str(response.status)] += 1
        return response

    async def respond(request: web.Request) -> web.StreamResponse:
        if methods and request.method not in methods:
            return web.Response(status=405, headers={"Allow": ", ".join(methods)})
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=await request.read(),
        )
        try:
            result = await fn.invoke(req)
        except Exception:
            metrics.invoked(fn.name, Outcome.FAILED)
            log.exception("Executed '%s' (Failed)", fn.name)
            return web.Response(status=500)
        if not isinstance(result, func.HttpResponse):
            metrics.invoked(fn.name, Outcome.FAILED)
            log.error("%s returned %s, not an HttpResponse", fn.name, type(result).__name__)
            return web.Response(status=500)
        metrics.invoked(fn.name, Outcome.SUCCEEDED)
        headers = dict(result.headers)
        if result.mimetype and "content-type" not in {k.lower() for k in headers}:
            ctype = result.mimetype
            if result.charset and ctype.startswith("text/"):
                ctype += f"; charset={result.charset}"
            headers["Content-Type"] = ctype
        return web.Response(body=result.get_body(), status=result.status_code, headers=headers)

    return handle


# ---------------------------------------------------------------------------------------------
# queues


def queue_connection(setting: str, settings: dict[str, str]) -> str:
    """The connection string behind a binding's ``connection`` (locally, always one)."""
    value = settings.get(setting) or settings.get(f"AzureWebJobs{setting}")
    if not value:
        raise HostError(f"connection setting {setting!r} is not set")
    if value.strip() == "UseDevelopmentStorage=true":
        from shared.storage import DEVELOPMENT_STORAGE

        return DEVELOPMENT_STORAGE
    return value


@dataclass
class QueueListener:
    """Polls one queue for one function with the host's semantics."""

    fn: Function
    client: QueueClient
    poison: QueueClient
    options: QueueOptions
    metrics: HostMetrics
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False

    async def ensure_queues(self) -> None:
        for q in (self.client, self.poison):
            with contextlib.suppress(ResourceExistsError):
                await q.create_queue()

    async def run(self) -> None:
        await self.ensure_queues()
        idle = 0.1
        while not self.stopping:
            if len(self.in_flight) > self.options.new_batch_threshold:
                await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = [
                    m
                    async for m in self.client.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=QUEUE_LEASE_SECONDS,
                    )
                ]
            except AzureError as exc:
                log.warning("polling %s failed: %s", self.client.queue_name, type(exc).__name__)
                messages = []
                idle = self.options.max_polling_interval
            if not messages:
                await asyncio.sleep(min(idle, self.options.max_polling_interval))
                idle = min(idle * 2, self.options.max_polling_interval)
                continue
            idle = 0.1
            for message in messages:
                task = asyncio.create_task(self.process(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def process(self, message: Any) -> None:
        self.metrics.queue_messages[self.fn.name][QueueEvent.RECEIVED] += 1
        content = message.content
        raw = content.encode() if isinstance(content, str) else bytes(content or b"")
        try:
            if message.dequeue_count > self.options.max_dequeue_count:
                raise HostError("dequeue count already past maxDequeueCount")
            body = base64.b64decode(raw, validate=True) if self.options.base64 else raw
            qm = QueueMessage(
                id=message.id,
                body=body,
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            renewal = asyncio.create_task(self.keep_leased(message))
            try:
                await self.fn.invoke(qm)
            finally:
                renewal.cancel()
        except Exception as exc:  # a failed invocation, or a body that is not base64
            self.metrics.invoked(self.fn.name, Outcome.FAILED)
            await self.failed(message, raw, exc)
            return
        self.metrics.invoked(self.fn.name, Outcome.SUCCEEDED)
        try:
            await self.client.delete_message(message.id, message.pop_receipt)
        except AzureError as exc:
            log.warning("could not delete message %s: %s", message.id, type(exc).__name__)

    async def keep_leased(self, message: Any) -> None:
        """Renew the message's invisibility at half the lease while the function runs."""
        while True:
            await asyncio.sleep(QUEUE_LEASE_SECONDS / 2)
            try:
                receipt = await self.client.update_message(
                    message.id, message.pop_receipt, visibility_timeout=QUEUE_LEASE_SECONDS
                )
                message.pop_receipt = receipt.pop_receipt
            except AzureError as exc:
                log.warning("could not renew the lease of %s: %s", message.id, type(exc).__name__)

    async def failed(self, message: Any, raw: bytes, exc: BaseException) -> None:
        log.error(
            "Executed '%s' (Failed, Id=%s, dequeue count %d): %s: %s",
            self.fn.name,
            message.id,
            message.dequeue_count,
            type(exc).__name__,
            exc,
        )
        try:
            if message.dequeue_count >= self.options.max_dequeue_count:
                await self.poison.send_message(raw.decode("ascii", errors="replace"))
                await self.client.delete_message(message.id, message.pop_receipt)
                self.metrics.queue_messages[self.fn.name][QueueEvent.POISONED] += 1
                log.warning(
                    "message %s moved to %s after %d tries",
                    message.id,
                    self.poison.queue_name,
                    message.dequeue_count,
                )
            else:
                await self.client.update_message(
                    message.id,
                    message.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout),
                )
                self.metrics.queue_messages[self.fn.name][QueueEvent.RETRIED] += 1
        except AzureError as err:  # the lease simply runs out and the message comes back
            log.warning("could not release message %s: %s", message.id, type(err).__name__)

    async def stop(self) -> None:
        self.stopping = True
        if self.in_flight:
            await asyncio.wait(self.in_flight, timeout=30)
        await self.client.close()
        await self.poison.close()


# ---------------------------------------------------------------------------------------------
# timers (NCRONTAB: second minute hour day month day-of-week)


def _field(spec: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_s = part.split("/", 1)
            step = int(step_s)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(part)
            end = high if "/" in spec else start
        if start < low or end > high or step < 1:
            raise HostError(f"schedule field {spec!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class Schedule:
    seconds: set[int]
    minutes: set[int]
    hours: set[int]
    days: set[int]
    months: set[int]
    weekdays: set[int]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise HostError(f"schedule {expression!r} must have 6 fields (NCRONTAB)")
        weekdays = {d % 7 for d in _field(parts[5], 0, 7)}
        return cls(
            _field(parts[0], 0, 59),
            _field(parts[1], 0, 59),
            _field(parts[2], 0, 23),
            _field(parts[3], 1, 31),
            _field(parts[4], 1, 12),
            weekdays,
        )

    def next_after(self, now: datetime) -> datetime:
        t = now.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(400 * 24 * 60):
            if (
                t.month in self.months
                and t.day in self.days
                and (t.weekday() + 1) % 7 in self.weekdays
                and t.hour in self.hours
                and t.minute in self.minutes
            ):
                later = [s for s in sorted(self.seconds) if s >= t.second]
                if later:
                    return t.replace(second=later[0])
            t = t.replace(second=0) + timedelta(minutes=1)
        raise HostError("schedule never fires")


async def run_timer(fn: Function, metrics: HostMetrics) -> None:
    schedule = Schedule.parse(str(fn.trigger["schedule"]))
    if fn.trigger.get("runOnStartup"):
        await _fire(fn, metrics)
    while True:
        now = datetime.now(UTC)
        due = schedule.next_after(now)
        await asyncio.sleep((due - now).total_seconds())
        await _fire(fn, metrics)


async def _fire(fn: Function, metrics: HostMetrics, argument: Any = None) -> None:
    try:
        await fn.invoke(TimerRequest(past_due=False) if argument is None else argument)
    except Exception:
        metrics.invoked(fn.name, Outcome.FAILED)
        log.exception("Executed '%s' (Failed)", fn.name)
    else:
        metrics.invoked(fn.name, Outcome.SUCCEEDED)


# ---------------------------------------------------------------------------------------------
# the host


async def serve(app_dir: Path, port: int, stop: asyncio.Event | None = None) -> None:
    """Run every function of the app until ``stop`` is set (or the process is signalled)."""
    settings = load_local_settings(app_dir)
    host_json = orjson.loads((app_dir / "host.json").read_bytes())
    options = QueueOptions.from_host_json(host_json)
    if os.environ.get("DEVHOST_VISIBILITY_TIMEOUT_SECONDS"):
        # Tests scale the host's retry spacing down (the real host reads host.json only).
        seconds = float(os.environ["DEVHOST_VISIBILITY_TIMEOUT_SECONDS"])
        options = dataclasses.replace(options, visibility_timeout=seconds)
    functions = load_functions(app_dir, settings)
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")

    metrics = HostMetrics()
    runner = web.AppRunner(
        http_app(functions, metrics, prefix, request_body_limit(settings)), access_log=None
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    listeners: list[QueueListener] = []
    tasks: list[asyncio.Task[None]] = []
    print("Functions:", flush=True)
    for fn in functions:
        kind = fn.trigger["type"]
        if kind == "httpTrigger":
            route = str(fn.trigger.get("route") or fn.name)
            methods = ",".join(str(m) for m in fn.trigger.get("methods") or ["*"])
            print(f"  {fn.name}: [{methods}] http://127.0.0.1:{port}/{prefix}/{route}", flush=True)
        elif kind == "queueTrigger":
            queue = str(fn.trigger["queueName"])
            conn = queue_connection(
                str(fn.trigger.get("connection") or "AzureWebJobsStorage"), settings
            )
            listener = QueueListener(
                fn,
                QueueClient.from_connection_string(conn, queue),
                QueueClient.from_connection_string(conn, f"{queue}-poison"),
                options,
                metrics,
            )
            listeners.append(listener)
            tasks.append(asyncio.create_task(listener.run()))
            print(f"  {fn.name}: queueTrigger {queue}", flush=True)
        else:
            tasks.append(asyncio.create_task(run_timer(fn, metrics)))
            print(f"  {fn.name}: timerTrigger {fn.trigger['schedule']}", flush=True)
    metrics.state = HostState.RUNNING
    print(f"Host started: http://127.0.0.1:{port}", flush=True)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    metrics.state = HostState.STOPPING
    log.info("host stopping")
    for listener in listeners:
        listener.stopping = True
    await asyncio.gather(*(listener.stop() for listener in listeners), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    # The app keeps per-process clients (shared/runtime.py); close them so the log ends clean.
    runtime = sys.modules.get("shared.runtime")
    if runtime is not None and hasattr(runtime, "reset_runtime"):
        await runtime.reset_runtime()
    webhook = sys.modules.get("shared.webhookqueue")  # the webhooks' own, when nothing else ran
    if webhook is not None and hasattr(webhook, "reset_webhook_queue"):
        await webhook.reset_webhook_queue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run function_app.py locally like `func start`.")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--app-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    for noisy in ("azure", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args.app_dir.resolve(), args.port))
    except HostError as exc:
        print(f"host: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
