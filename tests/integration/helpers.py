"""Small helpers shared by the integration tests: notification bodies, waiting, reading Azurite."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.graphsim.notifier import change_notification

T = TypeVar("T")


def notification(record_id: str, client_state: str, **extra: Any) -> dict[str, Any]:
    """One change notification exactly as learn.microsoft.com/graph/change-notifications-delivery-webhooks shows it, with ``extra`` keys changed."""
    return {**change_notification(record_id, client_state), **extra}


def batch(*items: dict[str, Any]) -> bytes:
    return orjson.dumps({"value": list(items)})


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until check() returns something truthy; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def blobs(conn: str, container: str) -> dict[str, Any]:
    """Every blob in the container: name -> parsed JSON."""
    client = ContainerClient.from_connection_string(conn, container)
    return {
        b.name: orjson.loads(client.download_blob(b.name).readall()) for b in client.list_blobs()
    }


def queue_depth(conn: str, queue: str) -> int:
    """Approximate message count (visible and invisible), as the host would see it."""
    client = QueueClient.from_connection_string(conn, queue)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:
        return 0


def queued_ids(conn: str, queue: str) -> list[str]:
    """The record ids waiting in a queue (peeked, so they stay)."""
    import base64

    client = QueueClient.from_connection_string(conn, queue)
    try:
        messages = client.peek_messages(max_messages=32)
    except Exception:
        return []
    return [orjson.loads(base64.b64decode(m.content))["id"] for m in messages]


def chromium() -> str | None:
    """Headless Chromium (Debian package `chromium`), or None where it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_flags(profile: str) -> list[str]:
    """Chromium, headless and quiet (no network of its own, a throwaway profile)."""
    browser = chromium()
    assert browser is not None, "chromium is not installed"
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]


def dump_dom(page: Path) -> str:
    """The page's DOM after headless Chromium has loaded and laid it out."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [*chromium_flags(profile), "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        ).stdout
