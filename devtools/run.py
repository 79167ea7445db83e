"""`make run`: the whole pipeline on this machine, no Azure and no tenant needed.

Azurite (storage), the Graph simulator playing a tenant that keeps making calls, and the app
under devtools.host. The app's own keep_subscription timer subscribes to the simulator, which
then POSTs change notifications exactly as Graph would. Every archived record is printed and
copied to ./local-archive/ as a plain file to open. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import orjson
from azure.storage.blob import ContainerClient

from devtools import stack
from devtools.ports import free_port, port_is_free

ROOT = Path(__file__).resolve().parent.parent
SHOW = ("subscription", "ERROR", "poison", "Traceback", "host: ")


def _port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


def _relay(log_path: Path, offset: int, stop: threading.Event) -> None:
    """Echo the lines of the host's log a person should see (the full log stays in the file)."""
    with log_path.open("rb") as log:
        log.seek(offset)
        while not stop.is_set():
            raw = log.readline()
            if not raw.endswith(b"\n"):  # nothing new yet, or half a line
                log.seek(-len(raw), os.SEEK_CUR)
                stop.wait(0.2)
                continue
            line = raw.decode(errors="replace").rstrip()
            if any(word in line for word in SHOW) and not line.startswith("  "):
                print(f"  app | {line.split(': ', 1)[-1] if 'INFO' in line else line}", flush=True)


CLI_SETTINGS = (
    "AzureWebJobsStorage",
    "ARCHIVE_CONTAINER",
    "CALLRECORDS_QUEUE",
    "GRAPH_BASE_URL",
    "GRAPH_CLIENT_STATE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "NOTIFICATION_URL",
)


def _write_cli_env(path: Path, env: dict[str, str]) -> None:
    """The settings of this run (free ports, a fresh secret) for `cli.py`, as shell assignments."""
    lines = [f"{k}='{env[k]}'" for k in CLI_SETTINGS if env.get(k)]
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the secret
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=7071, help="app port (default 7071, or a free one)"
    )
    parser.add_argument("--calls-per-minute", type=float, default=20.0)
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: until Ctrl-C)"
    )
    args = parser.parse_args(argv)

    workdir = ROOT / ".local"
    workdir.mkdir(exist_ok=True)
    out_dir = ROOT / "local-archive"
    print("Starting Azurite, the Graph simulator and the app...", flush=True)
    st = stack.start(
        workdir / "azurite",
        client_state=os.environ.get("GRAPH_CLIENT_STATE"),
        tenant=True,
        calls_per_minute=args.calls_per_minute,
        max_sessions=300,
    )
    az, sim = st.azurite, st.sim
    assert sim is not None
    container = os.environ.get("ARCHIVE_CONTAINER", "callrecords")
    st.create_container(container)
    log_path = workdir / "host.log"
    log_path.touch()
    # Timers on: the keeper subscribes to the simulator, which then notifies like Graph.
    queue = os.environ.get("CALLRECORDS_QUEUE", "callrecords")
    host = st.host(st.app_env(queue, container), log_path, timers=True, port=_port(args.port))
    port = host.port
    _write_cli_env(workdir / "cli.env", host.env)
    blobs = ContainerClient.from_connection_string(az.connection_string, container)
    stop = threading.Event()
    relay = threading.Thread(
        target=_relay, args=(log_path, log_path.stat().st_size, stop), daemon=True
    )
    relay.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen: set[str] = set()
    before = 0
    try:
        host.start()
        # The keeper does not run at start-up (as in Azure): subscribe now, as after a deploy.
        host.run_function("keep_subscription")
        print(
            f"""
  Graph simulator : {sim.base_url}  (tenant: ~{args.calls_per_minute:g} calls/min)
  App             : http://127.0.0.1:{port}/api/notifications  (log: .local/host.log)
  Azurite         : blob {az.blob_port}, queue {az.queue_port}  (data: .local/azurite)
  Archive         : container '{container}' -> copies in ./local-archive/
  Operator CLI    : set -a; . .local/cli.env; set +a; .venv/bin/python cli.py status
  Call quality    : (same shell) cli.py tabulate --since 1d; cli.py quality --since 1d --html q.html
  PSTN / DR logs  : timer sync_usage_logs at minute 23, or now: ... cli.py usage backfill --since 1d
  Ctrl-C to stop.
""",
            flush=True,
        )
        seen = {b.name for b in blobs.list_blobs()}
        before = len(seen)
        started = time.monotonic()
        while not stop.is_set():
            if host.proc is None or host.proc.poll() is not None:
                code = host.proc.returncode if host.proc else None
                print(f"the app host exited ({code}); see .local/host.log", flush=True)
                return 1
            for blob in blobs.list_blobs():
                if blob.name in seen:
                    continue
                seen.add(blob.name)
                data = blobs.download_blob(blob.name).readall()
                doc = orjson.loads(data)
                target = out_dir / blob.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                if blob.name.startswith(("pstn/", "directrouting/")):
                    what = f"{doc.get('callType')}, {doc.get('duration')} s"
                else:
                    what = (
                        f"{len(doc.get('sessions', []))} sessions, "
                        f"{len(doc.get('participants_v2', []))} participants"
                    )
                print(
                    f"  archived {blob.name}  ({what}, {len(data) / 1024:.0f} KiB)"
                    f" -> {target.relative_to(ROOT)}",
                    flush=True,
                )
            if args.duration and time.monotonic() - started > args.duration:
                break
            stop.wait(2)
    except KeyboardInterrupt:
        pass
    finally:
        print(
            f"\nStopping. {len(seen) - before} record versions archived in this run "
            f"({len(seen)} in container '{container}')."
        )
        stop.set()
        host.stop(timeout=15)
        st.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
