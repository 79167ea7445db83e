"""The local stack's pieces that need no services: which timers "timers off" switches off,
ports that cannot collide, and the host's counters."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest

from devtools.apphost import add_counts
from devtools.host import HostMetrics, HostState, Outcome, QueueEvent
from devtools.ports import closed_port, free_port
from devtools.stack import disabled, timer_functions, timers_off
from tests.functions_contract import EXPECTED_TRIGGERS


def test_timers_off_switches_off_every_timer_the_app_defines() -> None:
    timers = {n for n, t in EXPECTED_TRIGGERS.items() if t["type"] == "timerTrigger"}
    assert set(timer_functions()) == timers
    assert timers_off() == {f"AzureWebJobs.{n}.Disabled": "true" for n in timers}


def test_a_function_name_decorator_wins(tmp_path: Path) -> None:
    app = tmp_path / "function_app.py"
    app.write_text(
        "import azure.functions as func\napp = func.FunctionApp()\n\n"
        '@app.function_name(name="nightly")\n'
        '@app.timer_trigger(schedule="0 0 3 * * *", arg_name="t")\n'
        "def job(t): ...\n\n"
        '@app.route(route="x")\n'
        "def web(req): ...\n"
    )
    assert timer_functions(app) == ("nightly",)
    assert disabled("a", "b") == {
        "AzureWebJobs.a.Disabled": "true",
        "AzureWebJobs.b.Disabled": "true",
    }


def test_a_closed_port_refuses_and_cannot_be_taken() -> None:
    with closed_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))


def test_free_ports_come_from_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(15000 <= p < low for p in ports)
    assert len(ports) > 15  # drawn at random, not handed out in order


def test_host_counters_are_plain_json_and_add_up_across_restarts() -> None:
    m = HostMetrics()
    m.invoked("work", Outcome.SUCCEEDED)
    m.invoked("work", Outcome.FAILED)
    m.queue_messages["work"][QueueEvent.RETRIED] += 1
    m.state = HostState.RUNNING
    first = orjson.loads(orjson.dumps(m.as_dict()))
    assert first["state"] == "running"
    assert first["invocations"] == {"work": {"succeeded": 1, "failed": 1}}
    assert first["queue_messages"] == {"work": {"retried": 1}}
    again = {"invocations": {"work": {"succeeded": 2}, "tick": {"succeeded": 1}}}
    assert add_counts(first, again)["invocations"] == {
        "work": {"succeeded": 3, "failed": 1},
        "tick": {"succeeded": 1},
    }
