"""Start and stop Azurite (from node_modules, pinned by package-lock.json) on free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from devtools.ports import free_port, stop_process, wait_for_port
from shared.storage import development_storage

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Azurite:
    """A running Azurite: its ports, its connection string, and how to stop it."""

    blob_port: int
    queue_port: int
    process: subprocess.Popen[bytes] | None = None
    workdir: str = ""
    _own_dir: bool = field(default=False, repr=False)

    @property
    def connection_string(self) -> str:
        return development_storage(self.blob_port, self.queue_port)

    def stop(self) -> None:
        self.resume()  # a stopped process cannot act on SIGTERM
        stop_process(self.process, timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections still open and requests are accepted by the kernel, but
        nothing answers, as with a storage endpoint that black-holes traffic. Nothing is
        forgotten (unlike SIGKILL): resume() carries on where it stopped."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Kill and start again on the same ports and data folder (data survives)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = _spawn(self.blob_port, self.queue_port, self.workdir)
        wait_for_port(self.blob_port)
        wait_for_port(self.queue_port)

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _binary() -> str:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `npm ci` (make run / make test do it for you)")
    return str(path)


def _spawn(blob_port: int, queue_port: int, workdir: str) -> subprocess.Popen[bytes]:
    args = [
        _binary(),
        "--silent",
        "--skipApiVersionCheck",
        "--disableProductStyleUrl",
        "--location",
        workdir,
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(blob_port),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(queue_port),
        "--tablePort",
        str(free_port()),
    ]
    log = open(os.path.join(workdir, "azurite.log"), "ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def start(workdir: str | None = None) -> Azurite:
    """Start Azurite (blob + queue + table) on free loopback ports; wait until it listens."""
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="azurite-")
    os.makedirs(workdir, exist_ok=True)
    az = Azurite(free_port(), free_port(), workdir=workdir, _own_dir=own)
    az.process = _spawn(az.blob_port, az.queue_port, workdir)
    try:
        wait_for_port(az.blob_port)
        wait_for_port(az.queue_port)
    except TimeoutError:
        az.close()
        raise
    return az
