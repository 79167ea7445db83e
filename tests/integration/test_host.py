"""devtools.host behaves like the Functions host: metadata-driven, host.json queue semantics."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devtools.host import HostError, QueueOptions, Schedule, resolve
from devtools.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]

TEST_APP = """
import azure.functions as func

app = func.FunctionApp()
OUT = {out!r}


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    with open(OUT, "a") as f:
        f.write(f"{{body}} {{msg.dequeue_count}}\\n")
    if body.startswith("fail"):
        raise RuntimeError("failing on purpose")


@app.route(route="echo/{{name}}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params["name"] + req.params.get("x", ""), mimetype="text/plain")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("secret internals")


@app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    with open(OUT, "a") as f:
        f.write("tick\\n")
"""

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "queues": {
            "batchSize": 4,
            "newBatchThreshold": 2,
            "maxDequeueCount": 3,
            "visibilityTimeout": "00:00:00",
            "maxPollingInterval": "00:00:00.200",
            "messageEncoding": "base64",
        }
    },
}


def test_resolve_binding_expressions() -> None:
    assert resolve("%A%-x-%B%", {"A": "one", "B": "two"}) == "one-x-two"
    with pytest.raises(HostError, match="'%MISSING%' does not resolve"):
        resolve("%MISSING%", {})


def test_queue_options_from_host_json() -> None:
    project = json.loads((ROOT / "host.json").read_text())
    opts = QueueOptions.from_host_json(project)
    assert opts.max_dequeue_count == 5 and opts.base64
    assert opts.batch_size == project["extensions"]["queues"]["batchSize"]
    assert QueueOptions.from_host_json(HOST_JSON).max_polling_interval == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 5 * * * *", "2026-01-01T10:07:00", "2026-01-01T11:05:00"),
        ("*/15 * * * * *", "2026-01-01T10:07:01", "2026-01-01T10:07:15"),
        ("0 0 3 * * 1", "2026-01-01T10:00:00", "2026-01-05T03:00:00"),  # next Monday
        ("30 10 9-17 * * *", "2026-01-01T17:10:30", "2026-01-02T09:10:30"),
    ],
)
def test_ncrontab_next(expr: str, now: str, expected: str) -> None:
    t = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert Schedule.parse(expr).next_after(t) == datetime.fromisoformat(expected).replace(
        tzinfo=UTC
    )


def test_bad_schedule() -> None:
    with pytest.raises(HostError):
        Schedule.parse("0 5 * * *")
    with pytest.raises(HostError):
        Schedule.parse("0 61 * * * *")


def _write_app(tmp: Path, source: str) -> None:
    (tmp / "function_app.py").write_text(source)
    (tmp / "host.json").write_text(json.dumps(HOST_JSON))


def _run_host(tmp: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.host", "--port", str(port), "--app-dir", str(tmp)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=open(tmp / "host.log", "wb"),
        stderr=subprocess.STDOUT,
    )


def test_parameter_mismatch_fails_like_indexing(tmp_path: Path) -> None:
    _write_app(
        tmp_path,
        TEST_APP.format(out="x")
        .replace("def work(msg:", "def work(message:")
        .replace("msg.get_body()", "message.get_body()"),
    )
    proc = _run_host(
        tmp_path,
        {"WORK_QUEUE": "w", "AzureWebJobsStorage": "UseDevelopmentStorage=true"},
        free_port(),
    )
    assert proc.wait(timeout=30) == 2
    assert "do not match bindings" in (tmp_path / "host.log").read_text()


def test_unresolved_queue_name_fails_at_start(tmp_path: Path) -> None:
    _write_app(tmp_path, TEST_APP.format(out="x"))
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "WORK_QUEUE": ""}
    proc = _run_host(tmp_path, env, free_port())
    assert proc.wait(timeout=30) == 2
    assert "'%WORK_QUEUE%' does not resolve" in (tmp_path / "host.log").read_text()


def test_queue_http_and_timer_semantics(tmp_path: Path, azurite) -> None:
    from azure.storage.queue import QueueClient

    out = tmp_path / "out.txt"
    _write_app(tmp_path, TEST_APP.format(out=str(out)))
    queue = f"w{uuid.uuid4().hex[:10]}"
    port = free_port()
    proc = _run_host(
        tmp_path, {"WORK_QUEUE": queue, "AzureWebJobsStorage": azurite.connection_string}, port
    )
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}/api"
        assert httpx.get(f"{base}/echo/abc?x=1").text == "abc1"
        assert httpx.post(f"{base}/echo/abc").status_code == 405
        assert httpx.get(f"{base}/nothing").status_code == 404
        boom = httpx.get(f"{base}/boom")
        assert boom.status_code == 500 and "secret internals" not in boom.text

        q = QueueClient.from_connection_string(azurite.connection_string, queue)
        for body in ("ok-1", "fail-1", "ok-2"):
            q.send_message(base64.b64encode(body.encode()).decode())
        q.send_message("not base64 at all!")
        poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue}-poison")
        deadline = time.monotonic() + 30
        moved: list[str] = []
        while time.monotonic() < deadline and (len(moved) < 2 or out.read_text().count("tick") < 2):
            time.sleep(0.3)
            try:
                moved = [m.content for m in poison.peek_messages(max_messages=10)]
            except Exception:
                moved = []
        lines = out.read_text().splitlines()
        assert "ok-1 1" in lines and "ok-2 1" in lines
        # The failing message ran exactly maxDequeueCount (3) times, then went to poison as it was.
        assert [line for line in lines if line.startswith("fail-1")] == [
            "fail-1 1",
            "fail-1 2",
            "fail-1 3",
        ]
        assert sorted(moved) == sorted([base64.b64encode(b"fail-1").decode(), "not base64 at all!"])
        assert q.peek_messages(max_messages=10) == []
        assert lines.count("tick") >= 2  # runOnStartup, then every second

        # The same story in the host's counters (what tests, chaos and benchmarks read).
        def counted() -> dict:
            m = httpx.get(f"http://127.0.0.1:{port}/_host/metrics").json()
            return m if m["queue_messages"]["work"].get("poisoned") == 2 else {}

        deadline = time.monotonic() + 10
        while not (metrics := counted()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metrics["pid"] == proc.pid and metrics["state"] == "running"
        # fail-1 and the undecodable body: three tries each, then poison as they were.
        assert metrics["invocations"]["work"] == {"succeeded": 2, "failed": 6}
        assert metrics["queue_messages"]["work"] == {"received": 8, "retried": 4, "poisoned": 2}
        assert metrics["invocations"]["echo"] == {"succeeded": 1}
        assert metrics["invocations"]["boom"] == {"failed": 1}
        assert metrics["http_responses"]["echo"] == {"200": 1, "405": 1}
        assert metrics["http_responses"]["boom"] == {"500": 1}
        assert metrics["invocations"]["tick"]["succeeded"] >= 2

        # Any non-HTTP function on demand, as the Functions host's admin API runs it.
        admin = f"http://127.0.0.1:{port}/admin/functions"
        assert httpx.post(f"{admin}/work", json={"input": "manual-1"}).status_code == 202
        assert httpx.post(f"{admin}/tick", json={"input": ""}).status_code == 202
        assert httpx.post(f"{admin}/echo", json={"input": ""}).status_code == 404  # HTTP
        assert httpx.post(f"{admin}/nothing", json={"input": ""}).status_code == 404
        assert httpx.post(f"{admin}/tick", content=b"{not json").status_code == 400
        assert httpx.post(f"{admin}/tick", json={"input": {"a": 1}}).status_code == 400
        assert httpx.get(f"{admin}/tick").status_code == 405
        deadline = time.monotonic() + 10
        while "manual-1 1" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "manual-1 1" in out.read_text().splitlines()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
