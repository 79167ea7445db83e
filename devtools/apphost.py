"""The app under ``python -m devtools.host`` in a subprocess, for tests, chaos and benchmarks.

One place that knows how to start it on a free port (NOTIFICATION_URL pointing at itself),
wait until its functions are up, read its counters, and stop or kill it. Readiness and
counters come from the host's ``GET /_host/metrics``; the log is kept for people to read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devtools.host import METRICS_PATH, HostState
from devtools.ports import free_port, port_is_free, stop_process

ROOT = Path(__file__).resolve().parent.parent
START_ATTEMPTS = 3  # a free port someone else takes before the host binds it: try another


def add_counts(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``total`` plus ``more``, counter by counter (nested dicts of ints)."""
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, dict):
            out[key] = add_counts(out.get(key) or {}, value)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = int(out.get(key) or 0) + value
    return out


COUNTERS = ("invocations", "http_responses", "queue_messages")
# Settings a developer's shell may hold for a real deployment; a local host gets them only
# when its caller passes them.
NOT_INHERITED = ("ARCHIVE_STORAGE", "AZURE_CLIENT_ID", "LIFECYCLE_NOTIFICATION_URL")


class AppHost:
    """``AppHost(env, log_path).start()``; ``env`` is added to this process's environment."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self._own_port = port is None
        self.port = port or free_port()
        self.log_path = log_path
        self.settings = env
        self.env = self._environment()
        self.proc: subprocess.Popen[bytes] | None = None
        self._banked: dict[str, Any] = {}  # counters of this host's earlier (stopped) lives
        self._http: httpx.Client | None = None  # one connection for frequent counter reads

    def _environment(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if k not in NOT_INHERITED},
            "NOTIFICATION_URL": f"http://127.0.0.1:{self.port}/api/notifications",
            **self.settings,
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0) -> AppHost:
        """Start it and wait until it says (in its counters) that its functions are up."""
        for attempt in range(START_ATTEMPTS):
            self._spawn()
            if self._wait_ready(timeout):
                return self
            assert self.proc is not None
            # It exited, and something else holds its port: it lost a race for a free port.
            lost_port = self.proc.poll() is not None and not port_is_free(self.port)
            self.stop()
            if self._own_port and lost_port and attempt + 1 < START_ATTEMPTS:
                self.port = free_port()  # someone else listens there now
                self.env = self._environment()
                continue
            break
        raise RuntimeError(f"devtools.host did not start:\n{self.tail()}")

    def _spawn(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.host", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self, timeout: float) -> bool:
        """True once our child (its pid, not whoever else may listen there) is running."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                live = self._read_metrics(timeout=1.0)
            except httpx.HTTPError:
                live = None
            if live and live.get("pid") == self.proc.pid and live["state"] == HostState.RUNNING:
                return True
            time.sleep(0.05)
        return False

    def _read_metrics(self, timeout: float = 5.0) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.Client()
        r = self._http.get(f"{self.url}{METRICS_PATH}", timeout=timeout)
        r.raise_for_status()
        return dict(r.json())

    def metrics(self) -> dict[str, Any]:
        """The host's counters (see devtools.host), added up over every start of this
        AppHost: a host killed and started again counts on from where it was. Once stopped,
        what it counted up to the stop."""
        if self.proc is None or self.proc.poll() is not None:
            return {
                "pid": None,
                "state": "stopped",
                **{k: self._banked.get(k, {}) for k in COUNTERS},
            }
        live = self._read_metrics()
        return {**live, **add_counts({k: self._banked.get(k, {}) for k in COUNTERS}, live)}

    def invocations(self, function: str) -> dict[str, int]:
        """One function's invocations by outcome (``succeeded``, ``failed``)."""
        return dict(self.metrics()["invocations"].get(function, {}))

    def run_function(self, name: str, input: str = "", timeout: float = 120.0) -> str:
        """Run a non-HTTP function now (``POST /admin/functions/{name}``, as an operator would
        in Azure) and wait for that invocation to end; its outcome (``succeeded``/``failed``)."""
        before = self.invocations(name)
        r = httpx.post(f"{self.url}/admin/functions/{name}", json={"input": input}, timeout=10)
        if r.status_code != 202:
            raise RuntimeError(f"POST /admin/functions/{name}: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.invocations(name)
            for outcome in ("failed", "succeeded"):
                if now.get(outcome, 0) > before.get(outcome, 0):
                    return outcome
            time.sleep(0.1)
        raise TimeoutError(f"{name} did not finish within {timeout:.0f} s\n{self.tail()}")

    def _bank(self) -> None:
        """Keep the counters of the life about to end (what it does after this is lost)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            live = self._read_metrics(timeout=2.0)
        except httpx.HTTPError:
            return
        if live.get("pid") == self.proc.pid:
            self._banked = add_counts(self._banked, {k: live[k] for k in COUNTERS})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no clean-up, leased messages stay invisible until their lease ends."""
        if self.proc and self.proc.poll() is None:
            self._bank()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        self._bank()
        stop_process(self.proc, timeout)
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> AppHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
