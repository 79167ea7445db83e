"""Run the simulator as a child process on a free port, for tests, ``make run`` and benchmarks.

A separate process (not an in-process server) so the archiver under test shares nothing
with it but HTTP, and so ``restart()`` can show what a Graph outage looks like. Records and
subscriptions survive a restart (state file), and so do issued tokens (same secret).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.graphsim.client import SimClient
from devtools.graphsim.tokens import SECRET_ENV
from devtools.ports import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
READY = "graphsim listening on "


@dataclass
class SimulatorProcess:
    """A running simulator child process and how to reach it."""

    port: int
    host: str
    identity_header: str
    args: list[str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    client: SimClient = field(init=False)
    _own_dir: bool = field(default=False, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.client = SimClient(self.base_url)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    @property
    def log_path(self) -> Path:
        return self.workdir / "graphsim.log"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    def env(self) -> dict[str, str]:
        """What the app needs to use this simulator as Graph and as its managed identity."""
        return {
            "GRAPH_BASE_URL": self.base_url,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    def _launch(self, timeout: float) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.graphsim", *self.args],
            cwd=ROOT,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"graphsim exited ({self.process.returncode}):\n{self.tail()}")
            with self.log_path.open("rb") as f:
                f.seek(offset)
                if (READY + self.base_url).encode() in f.read():
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"graphsim did not start within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM (state is saved), SIGKILL after 10 s."""
        stop_process(self.process, timeout=10)
        self.process = None

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port; records, subscriptions and tokens survive."""
        self.stop()
        self._launch(timeout)

    def close(self) -> None:
        """Stop, close the client, remove the temporary directory if we made it."""
        self.stop()
        self.client.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_simulator(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    identity_header: str = "local-simulator",
    token_lifetime: int = 3600,
    seed: int | None = None,
    tenant: bool = False,
    calls_per_minute: float = 6.0,
    max_sessions: int = 200,
    subscription_quota: int | None = None,
    validation_timeout: float | None = None,
    workdir: str | Path | None = None,
    access_log: bool = False,
    extra_args: list[str] | None = None,
    env: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> SimulatorProcess:
    """Launch ``python -m devtools.graphsim`` (this interpreter) and wait until it listens.

    The log (stdout and stderr) goes to ``<workdir>/graphsim.log``; ``workdir`` defaults to
    a new temporary directory that ``close()`` removes.
    """
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="graphsim-")) if own else Path(str(workdir))
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        "--host",
        host,
        "--port",
        str(port),
        "--identity-header",
        identity_header,
        "--token-lifetime",
        str(token_lifetime),
        "--state-file",
        str(folder / "state.json"),
    ]
    if seed is not None:
        args += ["--seed", str(seed)]
    if tenant:
        args += ["--tenant", "--calls-per-minute", str(calls_per_minute)]
        args += ["--max-sessions", str(max_sessions)]
    if subscription_quota is not None:
        args += ["--subscription-quota", str(subscription_quota)]
    if validation_timeout is not None:
        args += ["--validation-timeout", str(validation_timeout)]
    if access_log:
        args.append("--access-log")
    args += list(extra_args or [])
    child_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}
    child_env.setdefault(SECRET_ENV, secrets.token_hex(32))
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    child_env["PYTHONUNBUFFERED"] = "1"
    sim = SimulatorProcess(port, host, identity_header, args, folder, _own_dir=own, _env=child_env)
    try:
        sim._launch(timeout)
    except BaseException:
        sim.close()
        raise
    return sim
