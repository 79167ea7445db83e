"""Free loopback ports and child processes, so several stacks (tests, make run, chaos,
benchmarks, and other people's runs on the same machine) can run side by side and stop cleanly.

A port handed to a child process is free when we look and taken when the child binds it; in
between, someone else may take it. Two things make that unlikely here: ports are drawn at
random from below the kernel's ephemeral range, so no outgoing connection (every HTTP client
on the machine takes its source ports from that range) can land on one, and concurrent runs
pick among thousands of ports. A URL that must never answer is different: it holds its port
for as long as it is used (``closed_port``), so nothing else can start listening there.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

# Below the ephemeral range, above the ports well-known services (and Azurite's defaults,
# 10000-10002, and the Functions host's 7071) use.
LOWEST = 15000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default range starts here


def _bind(port: int) -> int | None:
    """Bind 127.0.0.1:port (0: the kernel picks) and let go; the port, or None if taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
        return int(s.getsockname()[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, for a child process to listen on."""
    high = _ephemeral_low() - 1
    rng = random.SystemRandom()  # not seeded by anyone: concurrent runs draw differently
    if high - LOWEST > 1000:
        for _ in range(50):
            port = _bind(rng.randint(LOWEST, high))
            if port is not None:
                return port
    port = _bind(0)  # a machine whose ephemeral range leaves no room below it
    if port is None:
        raise OSError("no free port on 127.0.0.1")
    return port


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses every connection for as long as the block runs: bound by this
    process (so no other process can listen there) but never listening. For a "dead" URL
    that must fail fast and must never be answered by someone else's server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts connections on the port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def port_is_free(port: int) -> bool:
    return _bind(port) is not None


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
