"""The real Azure Functions Python worker indexes function_app.py the way the host does.

The worker for Python 3.13+ is on PyPI as ``azure-functions-runtime``; the Makefile installs it,
with the app's requirements and azure-functions 2.x, in ``.venv-py313``. A subprocess runs its
indexer: ``loader.index_function_app()``, then ``loader.process_indexed_function()`` with plain
objects standing in for the host protocol's protobuf messages (BindingInfo, RpcFunctionMetadata,
RpcRetryOptions). ``process_indexed_function`` is where the worker checks every handler's
parameters against its bindings, and rejects the function when they do not match.

Every function ``app.get_functions()`` reports under Python 3.11 must load in that worker, so the
test keeps working as functions are added. Two small apps written to a temporary directory prove
the harness both loads a good app and rejects a broken one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_PY313 = ROOT / ".venv-py313" / "bin" / "python"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The functions the app defines (issue 5) and the trigger each must have in Azure: the webhooks
# are anonymous (Graph cannot send credentials; clientState authenticates), health needs a key.
EXPECTED_TRIGGERS: dict[str, dict[str, Any]] = {
    "notifications": {
        "type": "httpTrigger",
        "route": "notifications",
        "methods": ["POST"],
        "authLevel": "ANONYMOUS",
    },
    "lifecycle": {
        "type": "httpTrigger",
        "route": "lifecycle",
        "methods": ["POST"],
        "authLevel": "ANONYMOUS",
    },
    "health": {
        "type": "httpTrigger",
        "route": "health",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "archive_call_record": {
        "type": "queueTrigger",
        "queueName": "%CALLRECORDS_QUEUE%",
        "connection": "AzureWebJobsStorage",
    },
    "keep_subscription": {"type": "timerTrigger"},
    "reconcile": {"type": "timerTrigger"},
    "sync_usage_logs": {"type": "timerTrigger"},
}
# function_app.py names two of them differently from the issue; same contract
EXPECTED_TRIGGERS["lifecycle_notifications"] = EXPECTED_TRIGGERS["lifecycle"]
EXPECTED_TRIGGERS["reconcile_recent"] = EXPECTED_TRIGGERS["reconcile"]

# Runs inside .venv-py313: the worker's own indexing code, fed plain stand-ins for the protobufs.
WORKER_INDEX = textwrap.dedent(
    """
    import json, os, sys, types

    app_dir = os.path.abspath(sys.argv[1])
    os.chdir(app_dir)
    sys.path.insert(0, app_dir)

    from azure_functions_runtime import loader
    from azure_functions_runtime.bindings import meta
    from azure_functions_runtime.functions import Registry


    class _Message:
        def __init__(self, **fields):
            self.__dict__.update(fields)


    class BindingInfo(_Message):
        # FunctionRpc.proto: BindingInfo.Direction and BindingInfo.DataType
        in_, out, inout = 0, 1, 2
        undefined, string, binary, stream = 0, 1, 2, 3


    class RpcFunctionMetadata(_Message):
        pass


    class RpcRetryOptions(_Message):
        pass


    protos = types.SimpleNamespace(
        BindingInfo=BindingInfo,
        RpcFunctionMetadata=RpcFunctionMetadata,
        RpcRetryOptions=RpcRetryOptions,
    )
    meta.load_binding_registry()
    result = {"python": sys.version.split()[0], "indexed": [], "loaded": [], "errors": []}
    try:
        functions = loader.index_function_app(os.path.join(app_dir, "function_app.py"))
    except Exception as exc:
        result["index_error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result))
        raise SystemExit(0)
    result["indexed"] = [f.get_function_name() for f in functions]
    registry = Registry()
    for function in functions:  # one at a time, so one broken function names itself
        try:
            metadata, _logs = loader.process_indexed_function(
                protos, registry, [function], app_dir
            )
        except Exception as exc:
            result["errors"].append(
                {"function": function.get_function_name(), "error": f"{type(exc).__name__}: {exc}"}
            )
            continue
        for m in metadata:
            result["loaded"].append(
                {
                    "name": m.name,
                    "language": m.language,
                    "bindings": {k: [v.type, v.direction] for k, v in m.bindings.items()},
                    "raw_bindings": [json.loads(b) for b in m.raw_bindings],
                }
            )
    print(json.dumps(result))
    """
)

# Runs with the app's own Python (3.11): what the app itself declares.
APP_FUNCTIONS = textwrap.dedent(
    """
    import importlib, json, os, sys

    app_dir = os.path.abspath(sys.argv[1])
    os.chdir(app_dir)
    sys.path.insert(0, app_dir)
    import azure.functions as func

    module = importlib.import_module("function_app")
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    assert len(apps) == 1, f"expected one FunctionApp in function_app.py, found {len(apps)}"
    print(json.dumps([
        {"name": f.get_function_name(), "raw_bindings": [json.loads(b) for b in f.get_raw_bindings()]}
        for f in apps[0].get_functions()
    ]))
    """
)

GOOD_APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


    @app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    async def notifications(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(status_code=202)


    @app.queue_trigger(
        arg_name="msg", queue_name="%CALLRECORDS_QUEUE%", connection="AzureWebJobsStorage"
    )
    async def archive_call_record(msg: func.QueueMessage) -> None:
        pass


    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=True)
    def keep_subscription(timer: func.TimerRequest) -> None:
        pass
    """
)

# `broken` declares its HTTP request binding as "req" (route()'s default) but its handler calls
# the parameter `request`: the worker refuses to load it, like the host would in Azure.
BROKEN_APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp()


    @app.route(route="fine", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def fine(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")


    @app.route(route="broken", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def broken(request: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("never")
    """
)


# --------------------------------------------------------------------------- helpers


def find_python313() -> list[str] | None:
    """A command running Python 3.13: python3.13 on PATH, else a 3.13 that pyenv installed."""
    candidates: list[list[str]] = []
    if shutil.which("python3.13"):
        candidates.append(["python3.13"])
    if shutil.which("pyenv"):
        listed = subprocess.run(
            ["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False
        ).stdout.split()
        versions = sorted(
            (v for v in listed if re.fullmatch(r"3\.13\.\d+", v)),
            key=lambda v: int(v.split(".")[2]),
        )
        if versions:
            candidates.append(["env", f"PYENV_VERSION={versions[-1]}", "python3.13"])
    for command in candidates:
        probe = subprocess.run(
            [*command, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 13)":
            return command
    return None


@pytest.fixture(scope="module")
def py313() -> Path:
    """.venv-py313's Python with azure-functions-runtime, or a skip saying why not."""
    if VENV_PY313.exists():
        probe = subprocess.run(
            [str(VENV_PY313), "-c", "import azure_functions_runtime, azure.functions"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return VENV_PY313
        message = f".venv-py313 is broken ({probe.stderr.strip()[-300:]}): make clean-extra-venvs"
        pytest.fail(message)
    command = find_python313()
    if command is None:
        pytest.skip(
            "no Python 3.13 on this machine (python3.13 on PATH, or installed by pyenv): "
            "the Functions worker for 3.13 (azure-functions-runtime) cannot run here"
        )
    message = f"Python 3.13 is here ({' '.join(command)}) but .venv-py313 is not: run `make test`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def app_environment() -> dict[str, str]:
    """Settings as in Azure: the environment, local.settings.json, then harmless stand-ins."""
    env = dict(os.environ)
    local = ROOT / "local.settings.json"
    if local.exists():
        for key, value in json.loads(local.read_text()).get("Values", {}).items():
            if value:
                env.setdefault(key, str(value))
    env.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    env.setdefault("CALLRECORDS_QUEUE", "callrecords")
    env.setdefault("ARCHIVE_CONTAINER", "callrecords")
    env.setdefault("NOTIFICATION_URL", "https://example.invalid/api/notifications")
    if not env.get("GRAPH_CLIENT_STATE"):
        env["GRAPH_CLIENT_STATE"] = "worker-index-test-client-state-0123456789"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def run_json(python: Path | str, script: str, app_dir: Path) -> Any:
    run = subprocess.run(
        [str(python), "-c", script, str(app_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=app_environment(),
        check=False,
    )
    assert run.returncode == 0, f"{python} exited {run.returncode}:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def index_with_worker(py313: Path, app_dir: Path) -> dict[str, Any]:
    return run_json(py313, WORKER_INDEX, app_dir)


def write_app(directory: Path, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "function_app.py").write_text(source)
    return directory


def trigger_of(raw_bindings: list[dict[str, Any]]) -> dict[str, Any]:
    triggers = [b for b in raw_bindings if b["type"].endswith("Trigger")]
    assert len(triggers) == 1, f"expected one trigger binding, found {raw_bindings}"
    return triggers[0]


# --------------------------------------------------------------------------- the harness


def test_worker_loads_a_well_formed_app(tmp_path: Path, py313: Path) -> None:
    result = index_with_worker(py313, write_app(tmp_path / "good", GOOD_APP))
    assert result["python"].startswith("3.13")
    assert "index_error" not in result, result
    assert result["errors"] == []
    loaded = {f["name"]: f for f in result["loaded"]}
    assert set(loaded) == {"notifications", "archive_call_record", "keep_subscription"}
    assert loaded["notifications"]["bindings"]["req"] == ["httpTrigger", 0]
    assert trigger_of(loaded["archive_call_record"]["raw_bindings"])["queueName"] == (
        "%CALLRECORDS_QUEUE%"
    )
    assert all(f["language"] == "python" for f in result["loaded"])


def test_worker_rejects_a_handler_whose_parameter_does_not_match_its_binding(
    tmp_path: Path, py313: Path
) -> None:
    result = index_with_worker(py313, write_app(tmp_path / "broken", BROKEN_APP))
    assert "index_error" not in result, result
    assert [f["name"] for f in result["loaded"]] == ["fine"]
    assert [e["function"] for e in result["errors"]] == ["broken"]
    error = result["errors"][0]["error"]
    assert error.startswith("FunctionLoadError") and "request" in error, error


# --------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def declared() -> list[dict[str, Any]]:
    """What function_app.py declares, read with the app's own Python (3.11)."""
    if not (ROOT / "function_app.py").exists():
        pytest.skip("function_app.py not written yet")
    return run_json(sys.executable, APP_FUNCTIONS, ROOT)


def test_every_function_of_the_app_loads_in_the_worker(
    py313: Path, declared: list[dict[str, Any]]
) -> None:
    result = index_with_worker(py313, ROOT)
    assert "index_error" not in result, f"the worker cannot index the app: {result['index_error']}"
    assert not result["errors"], "the worker rejects:\n" + "\n".join(
        f"  {e['function']}: {e['error']}" for e in result["errors"]
    )
    declared_names = {f["name"] for f in declared}
    assert declared_names, "function_app.py declares no function"
    assert set(result["indexed"]) == declared_names
    assert {f["name"] for f in result["loaded"]} == declared_names
    # the worker sees the same bindings as the app declares (name, type, direction)
    loaded = {f["name"]: f for f in result["loaded"]}
    for function in declared:
        mine = sorted((b["name"], b["type"], b["direction"]) for b in function["raw_bindings"])
        theirs = sorted(
            (b["name"], b["type"], b["direction"]) for b in loaded[function["name"]]["raw_bindings"]
        )
        assert mine == theirs, function["name"]


def test_known_functions_have_the_triggers_the_deployment_expects(
    declared: list[dict[str, Any]],
) -> None:
    """The Bicep builds the webhook URLs without a key and grants queue roles for this trigger."""
    triggers = {f["name"]: trigger_of(f["raw_bindings"]) for f in declared}
    # NOTIFICATION_URL and LIFECYCLE_NOTIFICATION_URL (infra/app/api.bicep) point at these routes
    for route in ("notifications", "lifecycle"):
        webhooks = [
            t for t in triggers.values() if t["type"] == "httpTrigger" and t.get("route") == route
        ]
        assert len(webhooks) == 1, f"expected one HTTP function on route {route!r}"
        (webhook,) = webhooks
        assert sorted(m.upper() for m in webhook.get("methods") or []) == ["POST"], route
        assert (webhook.get("authLevel") or "FUNCTION").upper() == "ANONYMOUS", route
    queue = [t for t in triggers.values() if t["type"] == "queueTrigger"]
    assert queue, "no queue-triggered function"
    for t in queue:
        assert (t["queueName"], t["connection"]) == ("%CALLRECORDS_QUEUE%", "AzureWebJobsStorage")
    for name, trigger in triggers.items():
        for key, value in EXPECTED_TRIGGERS.get(name, {}).items():
            actual = trigger.get(key)
            if key == "authLevel":
                actual = (actual or "FUNCTION").upper()
            elif key == "methods":
                actual = sorted(m.upper() for m in actual or [])
            assert actual == value, f"{name}: {key} is {actual!r}, expected {value!r}"
