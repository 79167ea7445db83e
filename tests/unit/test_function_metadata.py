"""What Azure indexes: each function's binding JSON, and handler parameters matching bindings."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import orjson
import pytest

import function_app
from shared.settings import SETTING_NAMES
from tests.functions_contract import DEFINED_IN, EXPECTED_TRIGGERS

ROOT = Path(__file__).resolve().parents[2]


# get_functions() may be called once per app: it registers the functions as it goes.
_FUNCTIONS = {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


def _functions() -> dict[str, func.Function]:
    return _FUNCTIONS


def _bindings(name: str) -> list[dict[str, object]]:
    return orjson.loads(_functions()[name].get_function_json())["bindings"]


def test_every_function_is_known() -> None:
    assert set(_functions()) == set(EXPECTED_TRIGGERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIGGERS))
def test_trigger_binding(name: str) -> None:
    trigger = _bindings(name)[0]
    assert trigger["direction"] == "IN"
    for key, value in EXPECTED_TRIGGERS[name].items():
        assert trigger.get(key) == value, (name, key)
    if trigger["type"] == "httpTrigger":
        assert _bindings(name)[1] == {"direction": "OUT", "type": "http", "name": "$return"}


@pytest.mark.parametrize(
    "name", ["reconcile", "rebuild_tables", "sync_usage_logs", "keep_subscription"]
)
def test_heavy_timers_do_not_run_on_start_up(name: str) -> None:
    # A scale-out must not trigger a 48 h listing or a table rebuild.
    assert "runOnStartup" not in _bindings(name)[0]


@pytest.mark.parametrize("name", sorted(_functions()))
def test_handler_parameters_match_bindings(name: str) -> None:
    fn = _functions()[name]
    handler = fn.get_user_function()
    params = set(inspect.signature(handler).parameters)
    names = {b["name"] for b in _bindings(name) if b["name"] != "$return"}
    assert params == names
    assert inspect.iscoroutinefunction(handler), "handlers share per-process async clients"


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIGGERS))
def test_each_function_is_bound_where_its_feature_is(name: str) -> None:
    assert _functions()[name].get_user_function().__module__ == DEFINED_IN[name]


def test_indexing_loads_no_operator_code_and_no_pyarrow() -> None:
    """What Azure imports to index the app: nothing of callrecords/ (not deployed), no DuckDB
    (not installed there), and no pyarrow until the rebuild timer runs."""
    code = (
        "import sys, function_app; function_app.app.get_functions(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('callrecords', 'cli', 'duckdb', 'pyarrow')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_function_app_imports_without_settings() -> None:
    """Indexing must never need settings (Azure indexes before they are resolved)."""
    code = "import function_app; print(len(function_app.app.get_functions()))"
    env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == len(_FUNCTIONS)


def test_the_webhook_path_loads_no_graph_client_and_no_blob_sdk() -> None:
    """A cold instance answers Graph's first notification (3 s budget, 2,900 ms counts as slow)
    without importing what only the other functions use: the runtime with its Graph client,
    httpx, the blob SDK, the archiver, reconciliation."""
    heavy = (
        "httpx",
        "azure.storage.blob",
        "shared.runtime",
        "shared.graph.client",
        "shared.graph.paging",
        "shared.archiver",
        "shared.reconcile",
        "shared.recordfetch",
    )
    code = (
        "import sys, function_app; function_app.app.get_functions(); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
