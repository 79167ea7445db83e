"""Cold start: from starting a host process to the first notification answered 202.

What Graph sees when a notification reaches an instance that has just started: the process
imports function_app.py (the Functions worker indexes it the same way), then the first POST
builds the webhook's queue clients and queues the batch. Graph's client waits 3 s and counts
an answer over 2,900 ms as slow (learn.microsoft.com/graph/change-notifications-delivery-webhooks).

``python -m bench.coldstart [runs]`` starts Azurite, then ``runs`` times (default 5): a fresh
development host (timers off, no simulator needed), a notification POSTed as soon as its port
answers; it prints the medians of (process start -> first 202) and (the first POST -> its
202). Not part of ``make bench``: each run starts a Python process, the figure is for people.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from devtools.graphsim.notifier import change_notification
from devtools.ports import free_port
from devtools.stack import ROOT, running, timers_off, unique


def one_run(env: dict[str, str], log: Path) -> tuple[float, float]:
    port = free_port()
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.host", "--port", str(port)],
            cwd=ROOT,
            env={**env, "NOTIFICATION_URL": f"http://127.0.0.1:{port}/api/notifications"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    body = {"value": [change_notification(str(uuid.uuid4()), env["GRAPH_CLIENT_STATE"])]}
    try:
        while True:
            try:
                sent = time.monotonic()
                r = httpx.post(f"http://127.0.0.1:{port}/api/notifications", json=body, timeout=10)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError(f"the host did not start: see {log}") from None
                time.sleep(0.01)
        done = time.monotonic()
        if r.status_code != 202:
            raise RuntimeError(f"answered {r.status_code}: {r.text}")
        return done - started, done - sent
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 5
    import os

    with running(sim=False) as st, tempfile.TemporaryDirectory() as tmp:
        queue = unique("q")
        st.create_queue(queue)
        env = {**os.environ, **timers_off(), **st.app_env(queue, unique("c"))}
        env.pop("ARCHIVE_STORAGE", None)
        results = [one_run(env, Path(tmp) / "host.log") for _ in range(runs)]
    total = statistics.median(r[0] for r in results)
    first = statistics.median(r[1] for r in results)
    print(f"cold start -> first 202: median {total * 1000:.0f} ms over {runs} runs")
    print(f"first POST -> its 202:  median {first * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
