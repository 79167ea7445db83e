"""What Azure indexes: each function's binding JSON, and handler parameters matching bindings."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import function_app
from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent


# get_functions() may be called once per app: it registers the functions as it goes.
_FUNCTIONS = {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def _functions() -> dict[str, object]:
    return _FUNCTIONS


def _bindings(name: str) -> list[dict[str, object]]:
    return orjson.loads(_functions()[name].get_function_json())["bindings"]


def test_notifications_binding() -> None:
    trigger, out = _bindings("notifications")
    assert trigger == {
        "direction": "IN",
        "type": "httpTrigger",
        "name": "req",
        "methods": ["POST"],
        "authLevel": "ANONYMOUS",
        "route": "notifications",
    }
    assert out == {"direction": "OUT", "type": "http", "name": "$return"}


def test_archive_binding() -> None:
    (trigger,) = _bindings("archive_call_record")
    assert trigger == {
        "direction": "IN",
        "type": "queueTrigger",
        "name": "msg",
        "queueName": "%CALLRECORDS_QUEUE%",
        "connection": "AzureWebJobsStorage",
    }


def test_lifecycle_and_health_bindings() -> None:
    trigger, _ = _bindings("lifecycle")
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (
        "lifecycle",
        ["POST"],
        "ANONYMOUS",
    )
    trigger, _ = _bindings("health")
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (
        "health",
        ["GET"],
        "FUNCTION",
    )


def test_timers() -> None:
    (keep,) = _bindings("keep_subscription")
    assert keep["type"] == "timerTrigger" and keep["runOnStartup"] is True
    assert keep["schedule"] == "0 7 * * * *"  # hourly
    (rec,) = _bindings("reconcile")
    assert rec["type"] == "timerTrigger" and rec["schedule"] == "0 37 * * * *"
    assert "runOnStartup" not in rec  # a scale-out must not trigger a 48 h listing
    (usage,) = _bindings("sync_usage_logs")
    assert usage["type"] == "timerTrigger" and usage["schedule"] == "0 23 * * * *"
    assert "runOnStartup" not in usage  # hourly; its watermark says where to resume


def test_every_function_is_known() -> None:
    assert set(_functions()) == {
        "notifications",
        "archive_call_record",
        "lifecycle",
        "keep_subscription",
        "reconcile",
        "sync_usage_logs",
        "health",
    }


@pytest.mark.parametrize("name", sorted(_functions()))
def test_handler_parameters_match_bindings(name: str) -> None:
    fn = _functions()[name]
    handler = fn.get_user_function()
    params = set(inspect.signature(handler).parameters)
    names = {b["name"] for b in _bindings(name) if b["name"] != "$return"}
    assert params == names
    assert inspect.iscoroutinefunction(handler), "handlers share per-process async clients"


def test_function_app_imports_without_settings() -> None:
    """Indexing must never need settings (Azure indexes before they are resolved)."""
    code = "import function_app; print(len(function_app.app.get_functions()))"
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == len(_FUNCTIONS)
