"""The app under ``python -m devtools.host`` in a subprocess, for tests, chaos and benchmarks.

One place that knows how to start it on a free port (NOTIFICATION_URL pointing at itself),
wait until its functions are up, read its log, and stop or kill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.ports import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
READY = b"Host started"


class AppHost:
    """``AppHost(env, log_path).start()``; ``env`` is added to this process's environment."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "NOTIFICATION_URL": f"http://127.0.0.1:{self.port}/api/notifications",
            **env,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60.0) -> AppHost:
        """Start it and wait until it says its functions are up (not just its port)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.host", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, timeout=timeout)
            deadline = time.monotonic() + timeout
            while READY not in self.log_path.read_bytes()[offset:]:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise TimeoutError
                time.sleep(0.05)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"devtools.host did not start:\n{self.tail()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no clean-up, leased messages stay invisible until their lease ends."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        stop_process(self.proc, timeout)

    def __enter__(self) -> AppHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
