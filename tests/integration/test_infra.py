"""Offline checks of the deployment: infra/*.bicep, infra/main.parameters.json, azure.yaml.

No Azure and no Bicep CLI here. Every .bicep file is parsed with pycep-parser; the app settings
the Bicep writes are checked against the settings the code reads; every role assignment against
Microsoft's built-in role ids, and the custom archive-writer role against the calls the archive
writer makes (Microsoft's permissions table) and what it must never allow (delete); the storage
hardening flags, the archive account with its lock, retention and audit logs, the queue and
container names, the Flex Consumption runtime, always-ready instance and timeout; private
networking (VNet, delegated subnet, each private endpoint's group id and DNS zone in two clouds,
public access off); the second Key Vault reference; the azd hooks are run for their guards; and
checkov scans the templates in both network modes from its own virtual environment
(.venv-checkov, made by the Makefile).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from devtools.bicep import parse_bicep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Azure built-in roles used here, name -> role definition id, as listed in Microsoft's
# "Azure built-in roles" reference (articles/role-based-access-control/built-in-roles/*.md:
# storage.md, security.md, monitor.md).
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
ARCHIVE_WRITER = "archive writer (custom role)"

# Least privilege: each role on the narrowest scope that works, by scope resource type.
EXPECTED_ROLE_SCOPES = {
    "Storage Blob Data Owner": "Microsoft.Storage/storageAccounts",
    "Storage Blob Data Contributor": "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Storage Queue Data Message Sender": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Storage Queue Data Message Processor": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Storage Queue Data Reader": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "Key Vault Secrets User": "Microsoft.KeyVault/vaults/secrets",
    "Monitoring Metrics Publisher": "Microsoft.Insights/components",
    ARCHIVE_WRITER: "Microsoft.Storage/storageAccounts/blobServices/containers",
}

BLOB_DATA = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"

# The data action each Blob REST operation needs, as Microsoft's table lists it
# (learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory
# #permissions-for-blob-service-operations); several entries = any one of them, the narrowest
# first. Put Blob creates a new blob with add/action, or creates or replaces with write; Put Block
# and Put Block List take write alone.
REST_DATA_ACTIONS: dict[str, tuple[str, ...]] = {
    "Put Blob": ("add/action", "write"),
    "Put Block": ("write",),
    "Put Block List": ("write",),
    "Get Blob": ("read",),
    "Get Blob Properties": ("read",),
    "Get Block List": ("read",),
    "List Blobs": ("read",),
    "Delete Blob": ("delete",),
    "Set Blob Tier": ("write",),
    "Set Blob Metadata": ("write",),
    "Set Blob Properties": ("write",),
    "Snapshot Blob": ("add/action", "write"),
    "Set Blob Tags": ("tags/write",),
}
# The REST operation behind each azure-storage-blob call (BlobClient / ContainerClient).
SDK_CALLS = {
    "upload_blob": "Put Blob",
    "stage_block": "Put Block",
    "commit_block_list": "Put Block List",
    "download_blob": "Get Blob",
    "get_blob_properties": "Get Blob Properties",
    "exists": "Get Blob Properties",
    "get_block_list": "Get Block List",
    "list_blobs": "List Blobs",
    "list_blob_names": "List Blobs",
    "walk_blobs": "List Blobs",
    "delete_blob": "Delete Blob",
    "delete_blobs": "Delete Blob",
    "set_standard_blob_tier": "Set Blob Tier",
    "set_blob_metadata": "Set Blob Metadata",
    "set_http_headers": "Set Blob Properties",
    "create_snapshot": "Snapshot Blob",
    "set_blob_tags": "Set Blob Tags",
}
# The classes that write the archive container (shared/blobstore.py).
ARCHIVE_WRITER_CLASSES = ("ArchiveWriter", "StagedBlob")

# The app settings the deployment must always write; SETTING_NAMES and the code add to them.
REQUIRED_APP_SETTINGS = (
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "ARCHIVE_STORAGE__blobServiceUri",
    "ARCHIVE_STORAGE__credential",
    "ARCHIVE_STORAGE__clientId",
    "ARCHIVE_CONTAINER",
    "CALLRECORDS_QUEUE",
    "GRAPH_BASE_URL",
    "GRAPH_CLIENT_STATE",
    "NOTIFICATION_URL",
    "LIFECYCLE_NOTIFICATION_URL",
    "AZURE_CLIENT_ID",
    "ARCHIVE_RETRY_BASE_SECONDS",
    "ARCHIVE_RETRY_WINDOW_MINUTES",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
)

# Platform settings: read by the platform or the Functions host, not by the code, so SETTING_NAMES
# does not list them (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, for one, is read by the host).
PLATFORM_SETTING_PREFIXES = ("WEBSITE_", "FUNCTIONS_", "AZURE_FUNCTIONS_", "IDENTITY_", "MSI_")
PLATFORM_SETTINGS = {"AzureWebJobsScriptRoot", "HOME", "CONTAINER_NAME"}

# Settings of other hosting plans that Flex Consumption rejects or ignores.
NOT_FOR_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "AzureWebJobsStorage",  # the connection-string form: keys, which the account refuses
}

# Retention of the archive container by default: a year, longer than Graph keeps call records
# (30 days), so a record lost from the archive cannot be fetched again.
DEFAULT_RETENTION_DAYS = 365
GRAPH_KEEPS_RECORDS_DAYS = 30

# Private DNS zone of each private-link sub-resource, global and US Government clouds, as
# Microsoft lists them (learn.microsoft.com/azure/private-link/private-endpoint-dns).
CLOUD_SUFFIXES = {
    "AzureCloud": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"},
    "AzureUSGovernment": {
        "storage": "core.usgovcloudapi.net",
        "keyvaultDns": ".vault.usgovcloudapi.net",
    },
}
PRIVATE_DNS_ZONES = {
    "AzureCloud": {
        "blob": "privatelink.blob.core.windows.net",
        "queue": "privatelink.queue.core.windows.net",
        "table": "privatelink.table.core.windows.net",
        "vault": "privatelink.vaultcore.azure.net",
    },
    "AzureUSGovernment": {
        "blob": "privatelink.blob.core.usgovcloudapi.net",
        "queue": "privatelink.queue.core.usgovcloudapi.net",
        "table": "privatelink.table.core.usgovcloudapi.net",
        "vault": "privatelink.vaultcore.usgovcloudapi.net",
    },
}
# What the app reaches privately: (main.bicep module, group id).
PRIVATE_ENDPOINTS = {
    ("hostStorage", "blob"),
    ("hostStorage", "queue"),
    ("hostStorage", "table"),
    ("archiveStorage", "blob"),
    ("keyVault", "vault"),
}
# checkov's network checks, which public mode skips and vnet mode must pass without skips.
NETWORK_CHECKS = {"CKV_AZURE_35", "CKV_AZURE_59", "CKV_AZURE_109", "CKV_AZURE_189"}

# Names the code (shared/settings.py defaults) and the README rely on.
ARCHIVE_CONTAINER = "callrecords"
WORK_QUEUE = "callrecords"
POISON_QUEUE = "callrecords-poison"

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


# --------------------------------------------------------------------------- helpers


def bicep(name: str) -> dict[str, Any]:
    return parse_bicep(INFRA / name)


def text(name: str) -> str:
    return (INFRA / name).read_text()


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource's own properties, under any `if (...)` / `[for ...]` wrapper."""
    config = resource["config"]
    while isinstance(config, dict) and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(doc: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.get("resources", {}).items() if v["type"] == type_}


def one_resource(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    found = resources(doc, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return body(next(iter(found.values())))


def param_default(doc: dict[str, Any], name: str) -> Any:
    return doc["parameters"][name]["default"]


def decorators(doc: dict[str, Any], param: str) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in doc["parameters"][param]["decorators"]}


def conditional(value: Any) -> tuple[Any, Any, Any]:
    """`condition ? a : b` as pycep reads it: (condition, a, b)."""
    assert isinstance(value, dict) and value["operator"]["type"] == "conditional", value
    ops = value["operator"]["operands"]
    return ops["condition"], ops["true_value"], ops["false_value"]


def resource_header(path: Path, name: str) -> str:
    """The `resource <name> '<type>' = [if (...)] {` line, conditions as written (pycep-parser
    nests `!` and `&&` wrongly, so conditions are read from the text)."""
    for line in path.read_text().splitlines():
        if re.match(rf"^(resource|module)\s+{re.escape(name)}\s", line):
            return line
    raise AssertionError(f"{name} not found in {path.name}")


def app_settings() -> dict[str, Any]:
    """The app settings the Function App gets (sites/config 'appsettings' or siteConfig)."""
    doc = bicep("app/api.bicep")
    settings: dict[str, Any] = {}
    for res in resources(doc, "Microsoft.Web/sites/config").values():
        if body(res)["name"] == "appsettings":
            settings.update(body(res)["properties"])
    for res in resources(doc, "Microsoft.Web/sites").values():
        for item in body(res)["properties"].get("siteConfig", {}).get("appSettings", []) or []:
            settings[item["name"]] = item["value"]
    return settings


def code_setting_names() -> set[str]:
    """Every setting the Python code reads: SETTING_NAMES, os.environ look-ups, %bindings%."""
    names = set(REQUIRED_APP_SETTINGS)
    settings_py = ROOT / "shared" / "settings.py"
    if settings_py.exists():
        for node in ast.walk(ast.parse(settings_py.read_text())):
            target = None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign):
                target, value = node.target, node.value
            if isinstance(target, ast.Name) and target.id == "SETTING_NAMES":
                assert isinstance(value, ast.Tuple | ast.List), "SETTING_NAMES must be a tuple"
                names.update(ast.literal_eval(value))
    sources = [*sorted((ROOT / "shared").glob("*.py")), ROOT / "function_app.py"]
    environ = re.compile(
        r"""(?:os\.environ(?:\.get)?|os\.getenv|environ\.get)\s*[\[(]\s*["']([A-Za-z_]\w*)["']"""
    )
    for source in sources:
        if source.exists():
            names.update(environ.findall(source.read_text()))
    app = ROOT / "function_app.py"
    if app.exists():
        code = app.read_text()
        names.update(re.findall(r"%([A-Za-z_]\w*)%", code))
        names.update(re.findall(r"""connection\s*=\s*["']([A-Za-z_]\w*)["']""", code))
    return {
        n
        for n in names
        if n not in PLATFORM_SETTINGS and not n.startswith(PLATFORM_SETTING_PREFIXES)
    }


def is_set(name: str, settings: dict[str, Any]) -> bool:
    """`X` counts as set when X itself or its identity-based `X__...` form is set."""
    return name in settings or any(key.startswith(f"{name}__") for key in settings)


# --------------------------------------------------------------------------- parsing


def test_there_are_bicep_files() -> None:
    names = {str(p.relative_to(INFRA)) for p in BICEP_FILES}
    assert {"main.bicep", "app/graph-app-role.bicep", "app/rbac.bicep", "app/api.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path: Path) -> None:
    doc = parse_bicep(path)
    assert doc.get("resources") or doc.get("modules"), f"{path} declares nothing"


def test_modules_are_local_files() -> None:
    """Resources are written out in local modules; no registry (br:/ts:) or AVM modules."""
    for path in BICEP_FILES:
        for name, module in parse_bicep(path).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}: module {name} is not a local file"
            assert (path.parent / module["detail"]["path"]).is_file(), f"module {name} missing"
        assert "br/public:" not in path.read_text() and "'br:" not in path.read_text()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_parameter_and_output_is_described(path: Path) -> None:
    doc = parse_bicep(path)
    for kind in ("parameters", "outputs"):
        for name, spec in doc.get(kind, {}).items():
            described = [
                d.get("argument") for d in spec["decorators"] if d["type"] == "description"
            ]
            assert described and len(str(described[0]).strip()) > 10, f"{path.name}: {kind} {name}"


def test_parameters_are_typed() -> None:
    """Lists are `string[]`, tags `{ *: string }`, structured values user-defined types."""
    for path in BICEP_FILES:
        doc, source = parse_bicep(path), path.read_text()
        for name, spec in doc.get("parameters", {}).items():
            assert spec["type"] != "array", f"{path.name}: param {name} is an untyped array"
            if name == "tags":
                assert re.search(r"^param tags \{ \*: string \} = \{\}$", source, re.M), path.name
            elif spec["type"] == "object":
                pytest.fail(f"{path.name}: param {name} is an untyped object")
    storage = bicep("app/storage.bicep")
    assert storage["parameters"]["archive"]["type"] == "archiveContainerType"
    assert storage["parameters"]["dataProtection"]["type"] == "dataProtectionType"
    for name in ("archiveContainerType", "dataProtectionType", "logCategoryType"):
        assert {"type": "export"} in storage["types"][name]["decorators"], name
    assert storage["parameters"]["queueNames"]["type"] == {"type": "array", "item_type": "string"}
    rbac = bicep("app/rbac.bicep")
    assert rbac["parameters"]["queueNames"]["type"] == {"type": "array", "item_type": "string"}


# --------------------------------------------------------------------------- app settings


def test_every_setting_the_code_reads_is_set_by_the_bicep() -> None:
    settings = app_settings()
    missing = sorted(n for n in code_setting_names() if not is_set(n, settings))
    assert not missing, (
        f"app settings the code reads but infra/app/api.bicep does not set: {missing}"
    )
    for name in REQUIRED_APP_SETTINGS:
        assert name in settings, name


def test_settings_py_names_are_used() -> None:
    """The consistency test really reads shared/settings.py once it exists."""
    if not (ROOT / "shared" / "settings.py").exists():
        pytest.skip("shared/settings.py not written yet")
    names = code_setting_names()
    assert {"AzureWebJobsStorage", "ARCHIVE_STORAGE", "GRAPH_CLIENT_STATE"} <= names


def test_storage_connections_are_identity_based() -> None:
    s = app_settings()
    for prefix in ("AzureWebJobsStorage", "ARCHIVE_STORAGE"):
        assert s[f"{prefix}__credential"] == "managedidentity"
        assert s[f"{prefix}__clientId"] == "identityClientId"
    assert s["AzureWebJobsStorage__blobServiceUri"] == "storageBlobEndpoint"
    assert s["AzureWebJobsStorage__queueServiceUri"] == "storageQueueEndpoint"
    # the archive is its own account unless archiveInHostAccount puts it back in the host's
    assert s["ARCHIVE_STORAGE__blobServiceUri"] == "archiveBlobEndpoint"
    main = bicep("main.bicep")
    assert (
        main["modules"]["api"]["config"]["params"]["archiveBlobEndpoint"] == "archiveBlobEndpoint"
    )
    pick = main["variables"]["archiveBlobEndpoint"]["value"]["operator"]
    assert pick["type"] == "conditional"
    assert pick["operands"]["condition"] == "archiveInHostAccount"
    assert pick["operands"]["true_value"]["operator"]["operands"]["operand_1"] == "hostStorage"
    assert pick["operands"]["false_value"]["operator"]["operands"]["operand_1"] == "archiveStorage"
    assert s["AZURE_CLIENT_ID"] == "identityClientId"
    forbidden = sorted(NOT_FOR_FLEX & set(s))
    assert not forbidden, f"settings Flex Consumption does not use: {forbidden}"
    api = main["modules"]["api"]["config"]["params"]
    assert api["identityClientId"]["operator"]["operands"]["operand_1"] == "identity"


def test_request_body_limit_is_the_webhooks_limit() -> None:
    """The host refuses bodies over the 1 MiB the webhooks accept, before reading them."""
    s = app_settings()
    assert s["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == {
        "function": {
            "type": "string",
            "parameters": {"value_to_convert": "requestBodySizeLimitBytes"},
        }
    }
    limit = param_default(bicep("app/api.bicep"), "requestBodySizeLimitBytes")
    assert limit == 1024 * 1024
    tree = ast.parse((ROOT / "shared" / "notifications.py").read_text())
    values = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "MAX_BODY_BYTES" for t in node.targets)
    ]
    assert len(values) == 1, "shared/notifications.py no longer has one MAX_BODY_BYTES"
    code = compile(ast.Expression(values[0]), "MAX_BODY_BYTES", "eval")
    assert eval(code, {"__builtins__": {}}) == limit  # noqa: S307 - a constant arithmetic expression


def test_webhook_urls_come_from_the_app_host_name() -> None:
    s = app_settings()
    host = "https://${functionApp.properties.defaultHostName}"
    assert s["NOTIFICATION_URL"] == f"{host}/api/notifications"
    assert s["LIFECYCLE_NOTIFICATION_URL"] == f"{host}/api/lifecycle"


def test_client_state_is_a_key_vault_reference_with_the_user_assigned_identity() -> None:
    s = app_settings()
    assert s["GRAPH_CLIENT_STATE"] == "@Microsoft.KeyVault(SecretUri=${clientStateSecretUri})"
    site = one_resource(bicep("app/api.bicep"), "Microsoft.Web/sites")
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert site["identity"]["type"] == "UserAssigned"
    kv = bicep("app/keyvault.bicep")
    vault = one_resource(kv, "Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    secret = body(resources(kv, "Microsoft.KeyVault/vaults/secrets")["clientStateSecret"])
    assert secret["properties"]["value"] == "clientStateValue"
    assert {"type": "secure"} in kv["parameters"]["clientStateValue"]["decorators"]
    assert "secretUri" in json.dumps(kv["outputs"]["clientStateSecretUri"])  # versionless


def test_client_state_is_generated_once_by_azd_and_never_output() -> None:
    main = bicep("main.bicep")
    deco = decorators(main, "graphClientState")
    assert "secure" in deco
    assert deco["max_length"] <= 128  # Graph's limit for clientState
    assert deco["metadata"]["azd"]["type"] == "generate"
    assert param_default(main, "graphClientState") is None
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert "graphClientState" not in params, "azd generates it only when the file leaves it out"
    for name, output in main["outputs"].items():
        assert "graphClientState" not in json.dumps(output), f"output {name} leaks the secret"


def test_application_insights_uses_entra_id() -> None:
    s = app_settings()
    assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identityClientId};Authorization=AAD"
    )
    assert s["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    component = one_resource(bicep("app/monitoring.bicep"), "Microsoft.Insights/components")
    assert component["properties"]["DisableLocalAuth"] is True
    assert component["properties"]["WorkspaceResourceId"]


# --------------------------------------------------------------------------- Flex Consumption


def test_flex_consumption_plan_and_app() -> None:
    api = bicep("app/api.bicep")
    plan = one_resource(api, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True
    site = one_resource(api, "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    config = props["functionAppConfig"]
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${storageBlobEndpoint}${deploymentContainerName}"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    scale = config["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] == "instanceMemoryMB"
    # 512 MB by default (bench/cost.py: executions wait on Graph, so a quarter of the memory
    # is a quarter of the bill), set from main.bicep so azd can change it
    main_bicep = bicep("main.bicep")
    assert param_default(main_bicep, "instanceMemoryMB") == 512
    assert param_default(api, "instanceMemoryMB") == 512
    assert main_bicep["modules"]["api"]["config"]["params"]["instanceMemoryMB"] == (
        "instanceMemoryMB"
    )
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    # the deployment container exists in the storage module, under the same name
    main = bicep("main.bicep")
    host = main["modules"]["hostStorage"]["config"]["params"]
    # The deployment container, plus the tables container when the archive shares the account.
    containers = str(host["containerNames"])
    assert "deploymentContainerName" in containers and "archiveInHostAccount" in containers
    assert main["modules"]["api"]["config"]["params"]["deploymentContainerName"] == (
        "deploymentContainerName"
    )


def test_azd_service_tag_matches_azure_yaml() -> None:
    api = bicep("app/api.bicep")
    site = one_resource(api, "Microsoft.Web/sites")
    assert "'azd-service-name': serviceName" in text("app/api.bicep")
    assert site["tags"]["function"]["type"] == "union"
    assert bicep("main.bicep")["modules"]["api"]["config"]["params"]["serviceName"] == "api"
    yaml = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  (\w+):\n((?:    .*\n)+)", yaml, re.M)
    assert service, "azure.yaml has no services.<name> block"
    assert service.group(1) == "api"
    fields = dict(re.findall(r"^    (\w+):\s*(\S+)", service.group(2), re.M))
    assert fields == {"project": ".", "language": "python", "host": "function"}


def test_python_version_matches_makefile_and_ci() -> None:
    """Flex runs the Python the Makefile (and so CI, which runs `make test`) requires."""
    api = bicep("app/api.bicep")
    assert param_default(api, "pythonVersion") == "3.11"
    assert decorators(api, "pythonVersion")["allowed"] == ["3.11"]
    main = bicep("main.bicep")
    assert main["variables"]["pythonVersion"]["value"] == "3.11"
    assert main["modules"]["api"]["config"]["params"]["pythonVersion"] == "pythonVersion"
    makefile = (ROOT / "Makefile").read_text()
    found = re.search(r"sys\.version_info >= \((\d+), (\d+)\)", makefile)
    assert found, "the Makefile no longer states the Python version it needs"
    assert f"{found.group(1)}.{found.group(2)}" == "3.11"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'target-version\s*=\s*"py311"', pyproject)


# --------------------------------------------------------------------------- storage


def test_queue_and_container_names() -> None:
    """The names the Bicep creates are the code's defaults, so a missing setting still works."""
    settings_py = (ROOT / "shared" / "settings.py").read_text()
    for setting, value in (
        ("ARCHIVE_CONTAINER", ARCHIVE_CONTAINER),
        ("CALLRECORDS_QUEUE", WORK_QUEUE),
    ):
        assert f'_name(env, "{setting}", "{value}")' in settings_py, setting
    main = bicep("main.bicep")
    variables = main["variables"]
    assert variables["archiveContainerName"]["value"] == ARCHIVE_CONTAINER
    assert variables["callrecordsQueueName"]["value"] == WORK_QUEUE
    poison = variables["poisonQueueName"]["value"].replace("${callrecordsQueueName}", WORK_QUEUE)
    assert poison == POISON_QUEUE
    assert variables["archive"]["value"]["name"] == "archiveContainerName"
    storage = bicep("app/storage.bicep")
    queues = one_resource(storage, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert queues["name"] == "queueName"
    host = main["modules"]["hostStorage"]["config"]["params"]
    assert host["queueNames"] == ["callrecordsQueueName", "poisonQueueName"]
    s = app_settings()
    assert (s["ARCHIVE_CONTAINER"], s["CALLRECORDS_QUEUE"]) == (
        "archiveContainerName",
        "callrecordsQueueName",
    )


def test_archive_has_its_own_account_unless_asked_to_share() -> None:
    main = bicep("main.bicep")
    assert param_default(main, "archiveInHostAccount") is False
    host = main["modules"]["hostStorage"]
    archive = main["modules"]["archiveStorage"]
    assert host["detail"]["path"] == archive["detail"]["path"] == "app/storage.bicep"
    assert resource_header(INFRA / "main.bicep", "archiveStorage").endswith(
        "= if (!archiveInHostAccount) {"
    )
    hp, ap = host["config"]["params"], archive["config"]["config"]["params"]
    # the archive account holds the archive and nothing else: no queues, no package
    # The records, and beside them the call-quality tables derived from them; no queues.
    assert ap["archive"] == "archive" and "queueNames" not in ap
    assert ap["containerNames"] == ["analyticsContainerName"]
    assert hp["archive"]["operator"]["operands"] == {
        "condition": "archiveInHostAccount",
        "true_value": "archive",
        "false_value": None,
    }
    assert ap["name"] != hp["name"] and ap["skuName"] == "archiveStorageSkuName"
    # the archive's protections go wherever the archive is; the host keeps host settings
    assert ap["dataProtection"] == "archiveDataProtection"
    assert hp["dataProtection"]["operator"]["operands"]["true_value"] == "archiveDataProtection"
    host_protection = main["variables"]["hostDataProtection"]["value"]
    assert host_protection["versioning"] is False
    assert main["variables"]["archiveDataProtection"]["value"]["versioning"] == (
        "blobVersioningEnabled"
    )
    assert param_default(main, "blobVersioningEnabled") is True
    # rbac and the outputs name the account that really holds the archive
    assert main["modules"]["rbac"]["config"]["params"]["archiveStorageAccountName"] == (
        "archiveAccountName"
    )
    assert main["outputs"]["ARCHIVE_STORAGE_ACCOUNT_NAME"]["value"] == "archiveAccountName"


@pytest.mark.parametrize("module", ["hostStorage", "archiveStorage"])
def test_both_storage_accounts_are_hardened(module: str) -> None:
    """One module makes both accounts, so each is as hardened as the module."""
    assert bicep("main.bicep")["modules"][module]["detail"]["path"] == "app/storage.bicep"
    storage = bicep("app/storage.bicep")
    props = one_resource(storage, "Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowedCopyScope"] == "AAD"
    # public endpoint and identity-only access by default, private endpoints only with
    # vnetEnabled (explained in the module; test_public_access_is_off_in_vnet_mode)
    assert conditional(props["publicNetworkAccess"]) == ("privateNetworking", "Disabled", "Enabled")
    assert props["networkAcls"]["bypass"] == "AzureServices"
    assert "VNet" in text("app/storage.bicep")
    for res in resources(
        storage, "Microsoft.Storage/storageAccounts/blobServices/containers"
    ).values():
        assert body(res)["properties"]["publicAccess"] == "None"


def test_immutability_parameters_and_the_locked_policy() -> None:
    main = bicep("main.bicep")
    assert param_default(main, "archiveImmutabilityDays") == DEFAULT_RETENTION_DAYS
    assert decorators(main, "archiveImmutabilityDays")["max_value"] == 146000  # 400 years
    assert param_default(main, "archiveImmutabilityLocked") is False
    warning = decorators(main, "archiveImmutabilityLocked")["description"]
    assert warning.startswith("IRREVERSIBLE") and "never be shortened or removed" in warning
    archive = main["variables"]["archive"]["value"]
    assert archive["immutabilityDays"] == "archiveImmutabilityDays"
    assert archive["immutabilityLocked"] == "archiveImmutabilityLocked"
    storage = bicep("app/storage.bicep")
    policy = resources(
        storage, "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies"
    )
    assert list(policy) == ["archiveImmutability"]
    assert body(policy["archiveImmutability"])["parent"] == "archiveContainer"
    props = body(policy["archiveImmutability"])["properties"]
    assert props == {
        "immutabilityPeriodSinceCreationInDays": "immutabilityDays",
        "allowProtectedAppendWrites": False,
    }
    # written by the template only while unlocked: a locked policy only accepts "extend"
    header = resource_header(INFRA / "app" / "storage.bicep", "archiveImmutability")
    assert header.endswith(
        "if (!empty(archiveName) && immutabilityDays > 0 && !immutabilityLocked) {"
    )
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["archiveImmutabilityDays"]["value"] == (
        f"${{ARCHIVE_IMMUTABILITY_DAYS={DEFAULT_RETENTION_DAYS}}}"
    )
    assert params["archiveImmutabilityLocked"]["value"] == "${ARCHIVE_IMMUTABILITY_LOCKED=false}"


def test_azd_hook_locks_the_policy_and_nothing_else() -> None:
    yaml = (ROOT / "azure.yaml").read_text()
    hook = re.search(r"^hooks:\n  (?:#.*\n  )*postprovision:\n((?:    .*\n)+)", yaml, re.M)
    assert hook, "azure.yaml has no postprovision hook"
    fields = dict(re.findall(r"^    (\w+):\s*(\S+)", hook.group(1), re.M))
    assert fields["shell"] == "sh"
    script = ROOT / fields["run"]
    assert script == INFRA / "hooks" / "lock-archive-immutability.sh"
    assert os.access(script, os.X_OK)
    source = script.read_text()
    assert "immutability-policy lock" in source and '--if-match "$(policy etag)"' in source
    assert "immutability-policy delete" not in source  # it never weakens a policy
    # with no ARCHIVE_IMMUTABILITY_DAYS in the environment it locks what the template sets
    default = re.search(r"days=\$\{ARCHIVE_IMMUTABILITY_DAYS:-(\d+)\}", source)
    assert default and int(default.group(1)) == param_default(
        bicep("main.bicep"), "archiveImmutabilityDays"
    )
    subprocess.run(["sh", "-n", str(script)], check=True)


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        ({}, 0, ""),
        ({"ARCHIVE_IMMUTABILITY_LOCKED": "false", "ARCHIVE_IMMUTABILITY_DAYS": "30"}, 0, ""),
        (
            {"ARCHIVE_IMMUTABILITY_LOCKED": "true", "ARCHIVE_IMMUTABILITY_DAYS": "0"},
            1,
            "ARCHIVE_IMMUTABILITY_DAYS of 1 or more",
        ),
        # no ARCHIVE_IMMUTABILITY_DAYS: the template's default, so on to the lock itself
        ({"ARCHIVE_IMMUTABILITY_LOCKED": "true"}, 1, "Azure CLI"),
        (
            {"ARCHIVE_IMMUTABILITY_LOCKED": "TRUE", "ARCHIVE_IMMUTABILITY_DAYS": "7d"},
            1,
            "whole number",
        ),
        (
            {"ARCHIVE_IMMUTABILITY_LOCKED": "true", "ARCHIVE_IMMUTABILITY_DAYS": "30"},
            1,
            "Azure CLI",
        ),
    ],
)
def test_azd_hook_guards(tmp_path: Path, env: dict[str, str], code: int, says: str) -> None:
    """Run for real with no `az` on PATH: it does nothing unless a lock is asked for, and
    refuses a lock it cannot do right instead of half-doing it."""
    sh = shutil.which("sh")
    assert sh
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tr",):  # the only external command the guards use
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    run = subprocess.run(
        [sh, str(INFRA / "hooks" / "lock-archive-immutability.sh")],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == code, run.stderr
    assert says in run.stderr
    if code == 0:
        assert not run.stdout and not run.stderr


def test_lifecycle_tiering_versioning_and_soft_delete_are_parameters() -> None:
    storage = bicep("app/storage.bicep")
    lifecycle = resources(storage, "Microsoft.Storage/storageAccounts/managementPolicies")
    assert list(lifecycle) == ["lifecycle"]
    assert "!empty(tieringActions)" in resource_header(INFRA / "app" / "storage.bicep", "lifecycle")
    rule = body(lifecycle["lifecycle"])["properties"]["policy"]["rules"][0]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${archiveName}/"]
    assert set(rule["definition"]["actions"]) == {"baseBlob"}  # tiers only, never deletes
    variables = storage["variables"]
    assert set(variables["tierToCool"]["value"]) == {"tierToCool"}
    assert set(variables["tierToArchive"]["value"]) == {"tierToArchive"}
    assert "union" in json.dumps(variables["tieringActions"])
    blob = one_resource(storage, "Microsoft.Storage/storageAccounts/blobServices")["properties"]
    assert blob["isVersioningEnabled"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": "dataProtection", "operand_2": "versioning"},
        }
    }
    main = bicep("main.bicep")
    for param, default in {
        "archiveCoolAfterDays": 0,
        "archiveArchiveAfterDays": 0,
        "blobVersioningEnabled": True,
        "blobSoftDeleteDays": 7,
        "containerSoftDeleteDays": 7,
        "archiveReadLogsEnabled": False,
    }.items():
        assert param_default(main, param) == default, param


# --------------------------------------------------------------------------- audit logs


def test_archive_blob_logs_go_to_the_workspace() -> None:
    storage = bicep("app/storage.bicep")
    diag = storage["resources"]["blobDiagnostics"]
    assert body(diag)["scope"] == "blobService"
    assert body(diag)["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = body(diag)["properties"]["logs"]
    assert logs["loop_type"]["detail"]["array_name"] == "blobLogCategories"
    assert logs["config"] == {"category": "category", "enabled": True}
    assert param_default(storage, "blobLogCategories") == ["StorageWrite", "StorageDelete"]
    main = bicep("main.bicep")
    categories = main["variables"]["archiveLogCategories"]["value"]["operator"]["operands"]
    assert categories["condition"] == "archiveReadLogsEnabled"
    assert categories["true_value"] == ["StorageWrite", "StorageDelete", "StorageRead"]
    assert categories["false_value"] == ["StorageWrite", "StorageDelete"]  # reads off for cost
    workspace = {"operator": {"type": "property_accessor", "operands": {
        "operand_1": "monitoring",
        "operand_2": {"operator": {"type": "property_accessor", "operands": {
            "operand_1": "outputs", "operand_2": "logAnalyticsId"}}},
    }}}  # fmt: skip
    archive = main["modules"]["archiveStorage"]["config"]["config"]["params"]
    assert archive["logAnalyticsWorkspaceId"] == workspace
    assert archive["blobLogCategories"] == "archiveLogCategories"
    host = main["modules"]["hostStorage"]["config"]["params"]["logAnalyticsWorkspaceId"]
    assert host["operator"]["operands"]["true_value"] == workspace
    assert host["operator"]["operands"]["false_value"] == ""
    assert "(archiveInHostAccount || hostAuditLogsEnabled) ?" in text("main.bicep")
    assert main["modules"]["keyVault"]["config"]["params"]["logAnalyticsWorkspaceId"] == workspace


def test_key_vault_audit_events_go_to_the_workspace() -> None:
    kv = bicep("app/keyvault.bicep")
    (diag,) = resources(kv, "Microsoft.Insights/diagnosticSettings").values()
    assert body(diag)["scope"] == "vault"
    assert body(diag)["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    assert body(diag)["properties"]["logs"] == [{"category": "AuditEvent", "enabled": True}]


# --------------------------------------------------------------------------- roles


def role_assignments() -> list[tuple[Path, str, dict[str, Any]]]:
    found = []
    for path in BICEP_FILES:
        for name, res in resources(
            parse_bicep(path), "Microsoft.Authorization/roleAssignments"
        ).items():
            found.append((path, name, res))
    return found


def assigned_role(res: dict[str, Any]) -> str:
    """The role a roleAssignment grants: a key of builtInRoleNames, or the custom role."""
    ref = body(res)["properties"]["roleDefinitionId"]["operator"]
    if ref["type"] == "property_accessor":
        assert ref["operands"] == {"operand_1": "archiveWriterRole", "operand_2": "id"}
        return ARCHIVE_WRITER
    assert ref["type"] == "index_accessor"
    assert ref["operands"]["operand_1"] == "builtInRoleNames"
    return ref["operands"]["operand_2"]


def test_role_map_holds_microsofts_built_in_role_ids() -> None:
    roles = bicep("app/rbac.bicep")["variables"]["builtInRoleNames"]["value"]
    found = {}
    for key, value in roles.items():
        ref = value["function"]
        assert ref["type"] == "subscription_resource_id"
        assert ref["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        found[key.strip("'")] = ref["parameters"]["resource_name_1"]
    assert found == BUILT_IN_ROLES
    # one map, no role variables beside it
    assert not re.search(r"^var \w+RoleId\b", text("app/rbac.bicep"), re.M)


def test_every_assignment_grants_a_named_role_to_the_app_identity() -> None:
    assert role_assignments(), "no role assignments found"
    for _, name, res in role_assignments():
        role = assigned_role(res)
        assert role in EXPECTED_ROLE_SCOPES, f"{name}: {role} is not a role this app uses"
        props = body(res)["properties"]
        assert props["principalType"] == "ServicePrincipal"
        assert props["principalId"] == "principalId"
        guid = body(res)["name"]["function"]
        assert guid["type"] == "guid"
        # the assignment's name is derived from the role it grants, so two never collide
        assert guid["parameters"]["extra_string_2"] == props["roleDefinitionId"]


def test_every_role_sits_on_the_narrowest_scope() -> None:
    seen: dict[str, str] = {}
    for path, name, res in role_assignments():
        doc = parse_bicep(path)
        role = assigned_role(res)
        scope = body(res)["scope"]
        if isinstance(scope, dict):  # queues[i] or vault::clientStateSecret
            operator = scope["operator"]
            operands = operator["operands"]
            if operator["type"] == "nested_resource_accessor":
                scope = f"{operands['operand_1']}__{operands['operand_2']}"
            else:
                assert operator["type"] == "index_accessor"
                scope = operands["operand_1"]
        scope_type = doc["resources"][scope]["type"]
        assert scope_type == EXPECTED_ROLE_SCOPES[role], f"{name}: {role} on {scope_type}"
        seen[role] = scope_type
    assert seen == EXPECTED_ROLE_SCOPES


def test_archive_writer_cannot_delete() -> None:
    rbac = bicep("app/rbac.bicep")
    role = one_resource(rbac, "Microsoft.Authorization/roleDefinitions")
    props = role["properties"]
    assert props["type"] == "CustomRole"
    (permissions,) = props["permissions"]
    assert permissions["actions"] == [] and permissions["notActions"] == []
    assert permissions["dataActions"] == "archiveWriterDataActions"
    granted = set(rbac["variables"]["archiveWriterDataActions"]["value"])
    assert granted == {f"{BLOB_DATA}/{action}" for action in archive_writer_needs()}
    for action in granted:
        assert "*" not in action and "delete" not in action.lower(), action
        assert "immutab" not in action.lower() and "tags" not in action, action
    # assignable in this resource group only (the narrowest a custom role allows), and
    # assigned on the archive container only
    (scope,) = props["assignableScopes"]
    assert scope["operator"]["operands"]["operand_1"]["function"]["type"] == "resource_group"
    assert "${resourceGroup().name}" in props["roleName"]  # role names are unique per tenant
    writer = rbac["resources"]["archiveWriter"]
    assert body(writer)["scope"] == "archiveContainer"
    container = rbac["resources"]["archiveContainer"]
    assert body(container)["parent"]["operator"]["operands"]["operand_1"] == "archiveStorage"
    assert body(container)["name"] == "archiveContainerName"


def archive_writer_calls() -> set[str]:
    """The REST operations the archive writer's code sends (its azure-storage-blob calls)."""
    tree = ast.parse((ROOT / "shared" / "blobstore.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    missing = [name for name in ARCHIVE_WRITER_CLASSES if name not in classes]
    assert not missing, (
        f"shared/blobstore.py no longer has {missing}: update ARCHIVE_WRITER_CLASSES"
    )
    operations = set()
    for name in ARCHIVE_WRITER_CLASSES:
        for node in ast.walk(classes[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in SDK_CALLS:
                    operations.add(SDK_CALLS[node.func.attr])
    return operations


def archive_writer_needs() -> set[str]:
    """The narrowest set of blob data actions that admits every operation the writer sends:
    an operation with one possible action forces it; one with a choice takes the first unless
    an action already needed covers it."""
    operations = archive_writer_calls()
    needed = {REST_DATA_ACTIONS[op][0] for op in operations if len(REST_DATA_ACTIONS[op]) == 1}
    for op in sorted(operations):
        if not needed & set(REST_DATA_ACTIONS[op]):
            needed.add(REST_DATA_ACTIONS[op][0])
    return needed


def test_archive_writer_role_is_exactly_what_its_calls_need() -> None:
    """The app stages large records (Put Block, Put Block List), which Azure authorizes with
    blobs/write alone; so the role holds write, and add/action would add nothing. Should the code
    stop staging blocks in the archive, this asks for read + add/action (create, never replace)."""
    operations = archive_writer_calls()
    assert {"Put Blob", "Get Blob Properties"} <= operations, operations
    assert "Delete Blob" not in operations and "Set Blob Tier" not in operations
    needs = archive_writer_needs()
    assert "delete" not in needs
    if {"Put Block", "Put Block List"} & operations:
        assert needs == {"read", "write"}
    else:
        assert needs == {"read", "add/action"}
    # what write allows beyond creating, storage refuses: the container's retention policy is
    # on by default, and the assignment's condition takes Set Blob Tier out of write
    assert param_default(bicep("main.bicep"), "archiveImmutabilityDays") > 0
    rbac = bicep("app/rbac.bicep")
    writer = body(rbac["resources"]["archiveWriter"])["properties"]
    assert writer["conditionVersion"] == "2.0" and writer["condition"] == "archiveWriterCondition"
    condition = rbac["variables"]["archiveWriterCondition"]["value"].replace("\\'", "'")
    container = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name]"
    assert condition == (
        f"((!(ActionMatches{{'{BLOB_DATA}/write'}} AND SubOperationMatches{{'Blob.Write.Tier'}}))"
        f" OR ({container} StringNotEquals '${{archiveContainerName}}'))"
    )


def test_queue_roles_cover_both_queues() -> None:
    rbac = bicep("app/rbac.bicep")
    queues = rbac["resources"]["queues"]["config"]["loop_type"]["detail"]
    assert queues["array_name"] == "queueNames"
    main = bicep("main.bicep")["modules"]["rbac"]["config"]["params"]
    assert main["queueNames"] == ["callrecordsQueueName", "poisonQueueName"]
    for name in ("queueSender", "queueProcessor", "queueReader"):
        loop = rbac["resources"][name]["config"]["loop_type"]["detail"]
        assert loop["array_name"] == "queueNames", name


# --------------------------------------------------------------------------- Graph app role


def test_graph_app_role_is_granted_with_the_graph_extension() -> None:
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    alias = config["extensions"]["microsoftGraphV1"]
    assert re.fullmatch(
        r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+", alias
    )
    with_extension = [p for p in BICEP_FILES if re.search(r"^extension\s", p.read_text(), re.M)]
    assert [p.name for p in with_extension] == ["graph-app-role.bicep"], (
        "extension kept in one module"
    )
    graph = bicep("app/graph-app-role.bicep")
    assert "microsoftGraphV1" in graph["extensions"]
    sp = one_resource(graph, "Microsoft.Graph/servicePrincipals")
    assert sp["appId"] == MICROSOFT_GRAPH_APP_ID
    grant = resources(graph, "Microsoft.Graph/appRoleAssignedTo")
    assert len(grant) == 1
    (grant,) = grant.values()
    assert grant["api_version"] == "v1.0"
    assert body(grant)["principalId"] == "principalId"
    assert param_default(graph, "appRoleValue") == "CallRecords.Read.All"
    assert "appRoleValue" in json.dumps(body(grant)["appRoleId"])
    main = bicep("main.bicep")
    module = main["modules"]["graphAppRole"]
    assert module["detail"]["path"] == "app/graph-app-role.bicep"
    assert module["config"]["condition"] == "grantGraphPermission"
    assert main["parameters"]["grantGraphPermission"]["type"] == "bool"


def test_readme_explains_deploy_and_the_manual_grant() -> None:
    readme = (INFRA / "README.md").read_text()
    for needle in (
        "azd up",
        "azd down --purge",
        "python cli.py subscription ensure",
        "keep_subscription",
        "GRANT_GRAPH_PERMISSION",
        "Privileged Role Administrator",
        "az rest",
        "appRoleAssignments",
        "New-MgServicePrincipalAppRoleAssignment",
        "CallRecords.Read.All",
        # the archive account, its role, the lock and the audit logs
        "ARCHIVE_IN_HOST_ACCOUNT",
        "blobs/add/action",
        "ARCHIVE_IMMUTABILITY_LOCKED",
        "cannot be undone",
        "lock-archive-immutability.sh",
        "StorageBlobLogs",
        'Category == "StorageDelete"',
        "AuditEvent",
        "ARCHIVE_READ_LOGS_ENABLED",
    ):
        assert needle in readme, needle
    # every azd variable main.parameters.json reads is documented
    params = (INFRA / "main.parameters.json").read_text()
    for variable in re.findall(r"\$\{([A-Z_]+)=", params):
        assert f"`{variable}`" in readme, variable


def test_main_parameters_file_matches_main_bicep() -> None:
    main = bicep("main.bicep")
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    unknown = sorted(set(params) - set(main["parameters"]))
    assert not unknown, f"main.parameters.json sets unknown parameters: {unknown}"
    for name, spec in main["parameters"].items():
        if spec["default"] is None and name != "graphClientState":
            assert name in params, f"required parameter {name} is not in main.parameters.json"


# --------------------------------------------------------------------------- private networking


def module_of(value: Any) -> str:
    """The module a `module.outputs.x` expression reads."""
    operator = value["operator"]
    assert operator["type"] == "property_accessor", value
    return operator["operands"]["operand_1"]


def zone_name(template: str, cloud: str) -> str:
    """A private DNS zone name as Bicep builds it from environment() in `cloud`."""
    suffixes = CLOUD_SUFFIXES[cloud]

    def evaluate(found: re.Match[str]) -> str:
        expr = found.group(1)
        plain = re.fullmatch(r"environment\(\)\.suffixes\.(\w+)", expr)
        if plain:
            return suffixes[plain.group(1)]
        replaced = re.fullmatch(
            r"replace\(environment\(\)\.suffixes\.(\w+), '([^']*)', '([^']*)'\)", expr
        )
        assert replaced, f"cannot evaluate {expr}"
        return suffixes[replaced.group(1)].replace(replaced.group(2), replaced.group(3))

    return re.sub(r"\$\{(.*?)\}", evaluate, template)


def test_vnet_is_one_switch_off_by_default() -> None:
    main = bicep("main.bicep")
    assert param_default(main, "vnetEnabled") is False
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["vnetEnabled"]["value"] == "${VNET_ENABLED=false}"
    network = main["modules"]["network"]
    assert network["detail"]["path"] == "app/network.bicep"
    assert network["config"]["condition"] == "vnetEnabled"
    # the app integrates with the network's delegated subnet, and only in vnet mode
    subnet = main["modules"]["api"]["config"]["params"]["virtualNetworkSubnetId"]
    condition, private, public = conditional(subnet)
    assert (condition, module_of(private), public) == ("vnetEnabled", "network", "")
    assert "appSubnetId" in json.dumps(private)
    site = one_resource(bicep("app/api.bicep"), "Microsoft.Web/sites")["properties"]
    assert conditional(site["virtualNetworkSubnetId"])[2] == "virtualNetworkSubnetId"
    # every module that has a network mode gets the same switch
    for module in ("hostStorage", "archiveStorage", "keyVault"):
        config = main["modules"][module]["config"]
        params_ = config.get("config", config)["params"]
        assert params_["privateNetworking"] == "vnetEnabled", module


def test_app_subnet_is_delegated_to_flex_consumption() -> None:
    network = bicep("app/network.bicep")
    vnet = one_resource(network, "Microsoft.Network/virtualNetworks")
    subnets = {s["name"]: s["properties"] for s in vnet["properties"]["subnets"]}
    variables = network["variables"]
    app = variables["appSubnetName"]["value"]
    endpoints = variables["privateEndpointSubnetName"]["value"]
    assert set(subnets) == {"appSubnetName", "privateEndpointSubnetName"} and app != endpoints
    delegations = subnets["appSubnetName"]["delegations"]
    assert [d["properties"]["serviceName"] for d in delegations] == ["Microsoft.App/environments"]
    assert "delegations" not in subnets["privateEndpointSubnetName"]  # endpoints need none
    # the app reaches Graph and Entra ID on the internet from its subnet
    assert subnets["appSubnetName"]["defaultOutboundAccess"] is True
    for props in subnets.values():
        assert props["networkSecurityGroup"]["id"]["operator"]["operands"]["operand_2"] == "id"
    # the subnet the app gets is the delegated one; the endpoints sit in the other
    assert network["outputs"]["appSubnetId"]["value"]["operator"]["operands"]["operand_1"] == (
        "appSubnet"
    )
    assert body(network["resources"]["appSubnet"])["name"] == "appSubnetName"
    pe = body(network["resources"]["endpoints"])["properties"]["subnet"]["id"]
    assert pe["operator"]["operands"]["operand_1"] == "privateEndpointSubnet"
    assert (
        body(network["resources"]["privateEndpointSubnet"])["name"] == "privateEndpointSubnetName"
    )


def test_every_private_endpoint_has_its_groups_dns_zone() -> None:
    network = bicep("app/network.bicep")
    zones = network["variables"]["privateDnsZoneNames"]["value"]
    group_ids = network["variables"]["groupIds"]["value"]
    allowed = {g.strip() for g in network["types"]["privateLinkGroupType"]["value"].split("|")}
    assert set(zones) == set(group_ids) == allowed
    # names from environment(): right in the global and the US Government clouds
    for cloud, expected in PRIVATE_DNS_ZONES.items():
        assert {g: zone_name(zones[g], cloud) for g in zones} == expected, cloud
    assert "core.windows.net" not in json.dumps(zones) and "azure.net" not in json.dumps(zones)
    # the endpoint exposes its group id, and its zone group names that group's zone
    endpoint = body(network["resources"]["endpoints"])["properties"]
    (connection,) = endpoint["privateLinkServiceConnections"]
    group = {"operator": {"type": "property_accessor", "operands": {
        "operand_1": "endpoint", "operand_2": "groupId"}}}  # fmt: skip
    assert connection["properties"]["groupIds"] == [group]
    zone_groups = network["resources"]["dnsZoneGroups"]
    assert zone_groups["config"]["loop_type"]["detail"]["array_name"] == "privateEndpoints"
    (config,) = body(zone_groups)["properties"]["privateDnsZoneConfigs"]
    zone_id = config["properties"]["privateDnsZoneId"]["function"]
    assert zone_id["type"] == "resource_id"
    assert zone_id["parameters"]["resource_type"] == "Microsoft.Network/privateDnsZones"
    assert zone_id["parameters"]["resource_name_1"]["operator"]["operands"] == {
        "operand_1": "privateDnsZoneNames",
        "operand_2": group,
    }
    # one zone per group id, each linked to the network (resolution only inside it)
    dns = network["resources"]["privateDnsZones"]
    assert dns["config"]["loop_type"]["detail"]["array_name"] == "groupIds"
    assert body(dns)["name"]["operator"]["operands"]["operand_1"] == "privateDnsZoneNames"
    links = network["resources"]["privateDnsZoneLinks"]
    assert links["config"]["loop_type"]["detail"]["array_name"] == "groupIds"
    assert body(links)["parent"]["operator"]["operands"] == {
        "operand_1": "privateDnsZones",
        "operand_2": "i",
    }
    link = body(links)["properties"]
    assert link["registrationEnabled"] is False
    assert link["virtualNetwork"]["id"]["operator"]["operands"]["operand_1"] == "vnet"


def test_private_endpoints_cover_every_service_the_app_uses() -> None:
    main = bicep("main.bicep")
    variables = main["variables"]
    listed = main["modules"]["network"]["config"]["config"]["params"]["privateEndpoints"]
    parts = listed["function"]["parameters"]
    assert listed["function"]["type"] == "concat"
    assert parts["arg_1"] == "hostPrivateEndpoints" and parts["arg_3"] == "vaultPrivateEndpoints"
    # the archive's own endpoint unless the archive shares the host account (whose blob
    # endpoint then serves it)
    assert conditional(parts["arg_2"]) == ("archiveInHostAccount", [], "archivePrivateEndpoints")
    found = set()
    for name in ("hostPrivateEndpoints", "archivePrivateEndpoints", "vaultPrivateEndpoints"):
        for endpoint in variables[name]["value"]:
            target = endpoint["resourceId"]
            if isinstance(target, str):  # archiveAccountId: the archive account, or the host's
                target = conditional(variables[target]["value"])[2]
            found.add((module_of(target), endpoint["groupId"]))
    assert found == PRIVATE_ENDPOINTS
    # and what the app actually uses has an endpoint: its storage connections and Key Vault
    settings = app_settings()
    assert {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__queueServiceUri"} <= set(
        settings
    )
    assert settings["GRAPH_CLIENT_STATE"].startswith("@Microsoft.KeyVault(")


@pytest.mark.parametrize("path", ["app/storage.bicep", "app/keyvault.bicep"])
def test_public_access_is_off_in_vnet_mode(path: str) -> None:
    doc = bicep(path)
    assert param_default(doc, "privateNetworking") is False
    kind = "Microsoft.Storage/storageAccounts" if "storage" in path else "Microsoft.KeyVault/vaults"
    props = one_resource(doc, kind)["properties"]
    assert conditional(props["publicNetworkAccess"]) == ("privateNetworking", "Disabled", "Enabled")
    acl = conditional(props["networkAcls"]["defaultAction"])
    assert acl == ("privateNetworking", "Deny", "Allow")
    assert not props["networkAcls"].get("ipRules") and not props["networkAcls"].get(
        "virtualNetworkRules"
    )
    # the skips of the network checks say they are for public mode only
    for check, reason in re.findall(r"//\s*checkov:skip=(CKV\w+):(.*)", text(path)):
        if check in NETWORK_CHECKS:
            assert reason.strip().startswith("public mode only (vnetEnabled=false)"), check


def test_private_networking_is_documented() -> None:
    doc = (ROOT / "docs" / "networking.md").read_text()
    for needle in (
        "azd env set VNET_ENABLED true",
        "Microsoft.App/environments",
        "privatelink.blob.",
        "az storage account update",
        "--public-network-access Disabled",
        "azd deploy",
        "/api/notifications",
        "learn.microsoft.com",
    ):
        assert needle in doc, needle
    readme = (ROOT / "README.md").read_text()
    assert "docs/networking.md" in readme and "private endpoint" in readme.lower()


PRIVATE_ENDPOINT_HOUR_USD = 0.01  # per endpoint-hour (Azure Private Link pricing)
PRIVATE_DNS_ZONE_MONTH_USD = 0.50  # per hosted zone, first 25 (Azure DNS pricing)
HOURS_PER_MONTH = 730


def test_private_networking_cost_is_what_the_templates_create() -> None:
    """docs/networking.md and the READMEs price what the templates create: the endpoints
    main.bicep lists and the zones network.bicep makes."""
    endpoints = len(PRIVATE_ENDPOINTS)
    zones = len(bicep("app/network.bicep")["variables"]["groupIds"]["value"])
    endpoints_usd = endpoints * HOURS_PER_MONTH * PRIVATE_ENDPOINT_HOUR_USD
    zones_usd = zones * PRIVATE_DNS_ZONE_MONTH_USD
    doc = (ROOT / "docs" / "networking.md").read_text()
    assert f"| Private endpoints | {endpoints} (" in doc and f"${endpoints_usd:.2f}" in doc
    assert f"| Private DNS zones | {zones} |" in doc and f"${zones_usd:.2f}" in doc
    total = int(endpoints_usd + zones_usd + 0.5)  # $38.50 is "about $39"
    for path in (ROOT / "docs" / "networking.md", ROOT / "README.md", INFRA / "README.md"):
        assert f"about **${total} a month**" in path.read_text(), path.name


# --------------------------------------------------------------------------- archive protection


def test_archive_account_has_a_delete_lock_by_default() -> None:
    storage = bicep("app/storage.bicep")
    assert param_default(storage, "deleteLock") is False  # only where the archive is
    lock = storage["resources"]["lock"]
    assert lock["type"] == "Microsoft.Authorization/locks"
    assert lock["config"]["condition"] == "deleteLock"
    assert body(lock)["scope"] == "storage"
    assert body(lock)["properties"]["level"] == "CanNotDelete"
    main = bicep("main.bicep")
    assert param_default(main, "archiveDeleteLock") is True
    assert main["modules"]["archiveStorage"]["config"]["config"]["params"]["deleteLock"] == (
        "archiveDeleteLock"
    )
    # the host account is locked only when it holds the archive
    assert "deleteLock: archiveInHostAccount && archiveDeleteLock" in text("main.bicep")
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["archiveDeleteLock"]["value"] == "${ARCHIVE_DELETE_LOCK=true}"


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({}, 1),  # the template's default: locked
        ({"ARCHIVE_DELETE_LOCK": "true", "ARCHIVE_STORAGE_ACCOUNT_NAME": "starchivex"}, 1),
        ({"ARCHIVE_DELETE_LOCK": "FALSE"}, 0),
        ({"ARCHIVE_DELETE_LOCK": "false"}, 0),
    ],
)
def test_azd_down_is_refused_while_the_archive_is_locked(
    tmp_path: Path, env: dict[str, str], code: int
) -> None:
    """The predown hook, run for real: it stops `azd down` before anything is attempted while
    the lock is on, says why and how to tear down deliberately, and is silent otherwise."""
    yaml = (ROOT / "azure.yaml").read_text()
    hook = re.search(r"^  predown:\n((?:    .*\n)+)", yaml, re.M)
    assert hook, "azure.yaml has no predown hook"
    fields = dict(re.findall(r"^    (\w+):\s*(\S+)", hook.group(1), re.M))
    assert fields["shell"] == "sh" and fields["continueOnError"] == "false"
    script = ROOT / fields["run"]
    assert os.access(script, os.X_OK)
    # its default is the template's
    assert param_default(bicep("main.bicep"), "archiveDeleteLock") is True
    assert "${ARCHIVE_DELETE_LOCK:-true}" in script.read_text()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tr", "cat"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    sh = shutil.which("sh")
    assert sh
    run = subprocess.run(
        [sh, str(script)],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == code, run.stderr
    if code:
        assert "CanNotDelete" in run.stderr and "az lock delete" in run.stderr
        assert env.get("ARCHIVE_STORAGE_ACCOUNT_NAME", "the archive account") in run.stderr
    else:
        assert not run.stdout and not run.stderr


def test_archive_container_has_a_retention_policy_by_default() -> None:
    main = bicep("main.bicep")
    days = param_default(main, "archiveImmutabilityDays")
    # longer than Graph keeps the records: past that, the archive is the only copy
    assert days == DEFAULT_RETENTION_DAYS > GRAPH_KEEPS_RECORDS_DAYS
    assert param_default(main, "archiveImmutabilityLocked") is False  # locking is a choice
    header = resource_header(INFRA / "app" / "storage.bicep", "archiveImmutability")
    assert "immutabilityDays > 0" in header
    readme = (INFRA / "README.md").read_text()
    assert f"{DEFAULT_RETENTION_DAYS} days" in readme and "lock-archive-immutability.sh" in readme


def test_azd_down_is_documented_to_leave_the_archive() -> None:
    readme = (INFRA / "README.md").read_text()
    section = readme.split("## Tear down", 1)[1].split("\n## ", 1)[0]
    for needle in ("azd down", "ScopeLocked", "az lock delete", "--purge", "purge protection"):
        assert needle in section, needle
    assert "azd down --purge\n" not in section  # no longer the suggested command


def test_host_account_blob_and_queue_writes_are_audited() -> None:
    storage = bicep("app/storage.bicep")
    queue = storage["resources"]["queueDiagnostics"]
    assert body(queue)["scope"] == "queueService"
    assert body(queue)["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = body(queue)["properties"]["logs"]
    assert logs["loop_type"]["detail"]["array_name"] == "queueLogCategories"
    assert param_default(storage, "queueLogCategories") == ["StorageWrite", "StorageDelete"]
    assert "if (!empty(queueNames) && !empty(logAnalyticsWorkspaceId)" in resource_header(
        INFRA / "app" / "storage.bicep", "queueDiagnostics"
    )
    main = bicep("main.bicep")
    assert param_default(main, "hostAuditLogsEnabled") is True
    host = main["modules"]["hostStorage"]["config"]["params"]
    condition = conditional(host["logAnalyticsWorkspaceId"])[0]["operator"]
    assert condition == {"type": "or", "operands": {
        "operand_1": "archiveInHostAccount", "operand_2": "hostAuditLogsEnabled"}}  # fmt: skip
    assert host["queueLogCategories"] == "hostLogCategories"
    assert main["variables"]["hostLogCategories"]["value"] == ["StorageWrite", "StorageDelete"]


def test_audit_log_retention_is_a_parameter_of_a_year() -> None:
    main = bicep("main.bicep")
    assert param_default(main, "auditLogRetentionDays") == 365
    assert decorators(main, "auditLogRetentionDays")["max_value"] == 730
    monitoring = bicep("app/monitoring.bicep")
    assert main["modules"]["monitoring"]["config"]["params"]["auditRetentionInDays"] == (
        "auditLogRetentionDays"
    )
    tables = monitoring["resources"]["auditTableRetention"]
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "auditTables"
    # every table a diagnostic setting here writes to
    assert set(monitoring["variables"]["auditTables"]["value"]) == {
        "StorageBlobLogs",
        "StorageQueueLogs",
        "AzureDiagnostics",
    }
    assert body(tables)["properties"] == {
        "retentionInDays": "auditRetentionInDays",
        "totalRetentionInDays": "auditRetentionInDays",
    }
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["auditLogRetentionDays"]["value"] == "${AUDIT_LOG_RETENTION_DAYS=365}"


def test_key_vault_purge_protection_is_on_by_default() -> None:
    kv = bicep("app/keyvault.bicep")
    assert param_default(kv, "enablePurgeProtection") is True
    vault = one_resource(kv, "Microsoft.KeyVault/vaults")["properties"]
    assert conditional(vault["enablePurgeProtection"]) == ("enablePurgeProtection", True, None)
    main = bicep("main.bicep")
    assert param_default(main, "keyVaultPurgeProtection") is True
    assert main["modules"]["keyVault"]["config"]["params"]["enablePurgeProtection"] == (
        "keyVaultPurgeProtection"
    )


def test_previous_client_state_is_a_second_key_vault_reference() -> None:
    s = app_settings()
    previous = conditional(s["GRAPH_CLIENT_STATE_PREVIOUS"])
    assert previous[1] == ""  # no rotation: no reference (an unresolved one stops the app)
    assert previous[2] == "@Microsoft.KeyVault(SecretUri=${previousClientStateSecretUri})"
    kv = bicep("app/keyvault.bicep")
    secret = kv["resources"]["previousClientStateSecret"]
    assert body(secret)["properties"]["value"] == "previousClientStateValue"
    assert body(secret)["properties"]["contentType"] == "text/plain"  # checkov cannot see it
    assert "if (!empty(previousClientStateValue))" in resource_header(
        INFRA / "app" / "keyvault.bicep", "previousClientStateSecret"
    )
    assert {"type": "secure"} in kv["parameters"]["previousClientStateValue"]["decorators"]
    # written from the azd environment on every provision, so a provision never erases it
    main = bicep("main.bicep")
    assert "secure" in decorators(main, "graphClientStatePrevious")
    assert param_default(main, "graphClientStatePrevious") == ""
    assert main["modules"]["keyVault"]["config"]["params"]["previousClientStateValue"] == (
        "graphClientStatePrevious"
    )
    # the vault's output and the role follow one flag derived from it (no output reads it)
    not_empty = {"operator": {"type": "not", "operands": {"bool_value": {"function": {
        "type": "empty", "parameters": {"item_to_test": "graphClientStatePrevious"}}}}}}  # fmt: skip
    assert main["modules"]["keyVault"]["config"]["params"]["rotationUnderWay"] == not_empty
    uri = conditional(kv["outputs"]["previousClientStateSecretUri"]["value"])
    assert uri[0] == "rotationUnderWay" and uri[2] == ""
    assert "previousClientStateSecretName" in str(uri[1])
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["graphClientStatePrevious"]["value"] == "${GRAPH_CLIENT_STATE_PREVIOUS=}"
    for name, output in main["outputs"].items():
        assert "graphClientStatePrevious" not in json.dumps(output), f"output {name} leaks it"
    # readable by the app's identity during a rotation only, that secret alone
    rbac = bicep("app/rbac.bicep")
    grant = rbac["resources"]["previousClientStateSecretsUser"]
    assert grant["config"]["condition"] == "rotationUnderWay"
    assert body(grant)["scope"] == "previousClientStateSecret"
    assert main["modules"]["rbac"]["config"]["params"]["rotationUnderWay"] == {
        "operator": {"type": "not", "operands": {"bool_value": {"function": {
            "type": "empty", "parameters": {"item_to_test": "graphClientStatePrevious"}}}}}
    }  # fmt: skip
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "azd env set GRAPH_CLIENT_STATE_PREVIOUS" in operations


# --------------------------------------------------------------------------- cold start, timeouts


def test_one_always_ready_instance_for_http_by_default() -> None:
    main = bicep("main.bicep")
    assert param_default(main, "alwaysReadyHttpInstances") == 1
    assert decorators(main, "alwaysReadyHttpInstances")["min_value"] == 0
    assert main["modules"]["api"]["config"]["params"]["alwaysReadyHttpInstances"] == (
        "alwaysReadyHttpInstances"
    )
    scale = one_resource(bicep("app/api.bicep"), "Microsoft.Web/sites")["properties"][
        "functionAppConfig"
    ]["scaleAndConcurrency"]
    condition, ready, none = conditional(scale["alwaysReady"])
    assert condition == {"operator": {"type": "greater_than", "operands": {
        "operand_1": "alwaysReadyHttpInstances", "operand_2": 0}}}  # fmt: skip
    # "http" is Flex Consumption's name for the group of every HTTP-triggered function
    assert ready == [{"name": "http", "instanceCount": "alwaysReadyHttpInstances"}]
    assert none == []  # 0 turns it off
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert params["alwaysReadyHttpInstances"]["value"] == "${ALWAYS_READY_HTTP_INSTANCES=1}"


def test_function_timeout_fits_the_flex_consumption_plan() -> None:
    """Flex Consumption enforces no maximum functionTimeout, but gives a running execution 60
    minutes when its instance is scaled in (learn.microsoft.com/azure/azure-functions/
    functions-scale#timeout): a longer timeout is one the platform would not honour."""
    host = json.loads((ROOT / "host.json").read_text())
    value = host.get("functionTimeout")
    assert value and value != "-1", "host.json must set functionTimeout (Flex's default is 30 min)"
    hours, minutes, seconds = (int(x) for x in value.split(":"))
    total = hours * 3600 + minutes * 60 + seconds
    assert 0 < total <= 60 * 60, value
    assert "functionTimeout" in (INFRA / "README.md").read_text()


# --------------------------------------------------------------------------- checkov


CHECKOV_PARAM = re.compile(r"^param\s+(\w+)\s+(.+?)(\s*=.*)?$")


def checkov_text(source: str) -> str:
    """The Bicep as checkov's pinned parser (pycep-parser 0.5.1) can read it. That parser predates
    typed parameters and user-defined types, so they are written as the untyped `array` and
    `object` they compile to, and the type declarations are left out; every resource, property
    and expression stays as it is, which is all checkov's checks look at."""
    out: list[str] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^type\s+\w+\s*=", line):
            while out and out[-1].startswith("@"):
                out.pop()
            if line.rstrip().endswith("{"):
                while lines[i] != "}":
                    i += 1
            i += 1
            continue
        found = CHECKOV_PARAM.match(line)
        if found:
            name, kind, rest = found.group(1), found.group(2).strip(), found.group(3) or ""
            kind = "array" if kind.endswith("[]") else kind.rstrip("?")
            if kind not in {"string", "int", "bool", "object", "array"}:
                kind = "object"
            line = f"param {name} {kind}{rest}"
        out.append(line)
        i += 1
    return "\n".join(out) + "\n"


def test_checkov_text_keeps_every_resource() -> None:
    for path in BICEP_FILES:
        if re.search(r"^extension\s", path.read_text(), re.M):
            continue
        before = parse_bicep(path)
        after: dict[str, Any] = dict(BicepParser().parse(text=checkov_text(path.read_text())))
        assert after["resources"] == before["resources"], path.name
        assert after.get("modules") == before.get("modules"), path.name
        assert set(after["parameters"]) == set(before["parameters"]), path.name


# The deployment's modes: the value of each switch whose `switch ? a : b` the scan resolves.
# Default: public network, purge protection on; vnet: the same with private networking.
CHECKOV_MODES = {
    "default": {"privateNetworking": False, "enablePurgeProtection": True},
    "vnet": {"privateNetworking": True, "enablePurgeProtection": True},
}
SIMPLE_TOKEN = r"(?:'[^']*'|true|false|null|\d+)"


def in_mode(source: str, switches: dict[str, bool]) -> tuple[str, int]:
    """The Bicep as deployed with these switches: every `switch ? a : b` whose branches are
    plain literals becomes the branch taken (checkov evaluates no conditionals). Returns the
    text and how many were resolved."""
    count = 0

    def pick(found: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return found.group(2) if switches[found.group(1)] else found.group(3)

    names = "|".join(map(re.escape, switches))
    pattern = rf"\b({names}) \? ({SIMPLE_TOKEN}) : ({SIMPLE_TOKEN})"
    return re.sub(pattern, pick, source), count


def test_modes_resolve_the_network_and_purge_switches() -> None:
    for path, expected in (("app/storage.bicep", 2), ("app/keyvault.bicep", 3)):
        source = text(path)
        default, n = in_mode(source, CHECKOV_MODES["default"])
        vnet, m = in_mode(source, CHECKOV_MODES["vnet"])
        assert n == m == expected, path
        assert "publicNetworkAccess: 'Enabled'" in default and "defaultAction: 'Allow'" in default
        assert "publicNetworkAccess: 'Disabled'" in vnet and "defaultAction: 'Deny'" in vnet
        assert "privateNetworking ? '" not in vnet
    assert (
        "enablePurgeProtection: true"
        in in_mode(text("app/keyvault.bicep"), CHECKOV_MODES["vnet"])[0]
    )


def run_checkov(tmp_path: Path, mode: str) -> dict[str, Any]:
    """checkov (bicep) over infra/ as deployed in `mode`, minus the Graph-extension module its
    pycep cannot parse; in vnet mode without the network checks' skips, which must not be
    needed there."""
    scan = tmp_path / mode / "infra"
    shutil.copytree(INFRA, scan)
    excluded = []
    for path in sorted(scan.rglob("*.bicep")):
        if re.search(r"^extension\s", path.read_text(), re.M):
            excluded.append(path.name)
            path.unlink()
            continue
        source, _ = in_mode(path.read_text(), CHECKOV_MODES[mode])
        if mode == "vnet":
            source = "\n".join(
                line
                for line in source.splitlines()
                if not re.search(rf"checkov:skip=({'|'.join(NETWORK_CHECKS)}):", line)
            )
        path.write_text(checkov_text(source))
    assert excluded == ["graph-app-role.bicep"]
    run = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "-d", str(scan), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        check=False,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}):\n{run.stderr}"
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    report["scan"] = scan
    return report


@pytest.mark.parametrize("mode", sorted(CHECKOV_MODES))
def test_checkov_finds_no_failed_check(tmp_path: Path, mode: str) -> None:
    if not CHECKOV.exists():
        message = f"{CHECKOV.relative_to(ROOT)} is missing: `make test` creates it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    report = run_checkov(tmp_path, mode)
    results = report.get("results", {})
    failed = results.get("failed_checks", [])
    lines = [
        f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']} {c['check_name']}"
        for c in failed
    ]
    assert not failed, f"checkov failed checks ({mode}):\n" + "\n".join(lines)
    assert not results.get("parsing_errors"), f"checkov could not parse {results['parsing_errors']}"
    assert report["summary"]["passed"] > 0 and report["summary"]["resource_count"] > 0
    # every file was scanned, and every skip in the Bicep is used and says why
    scanned = {
        Path(c["file_path"]).name for k in results for c in results[k] if k != "parsing_errors"
    }
    expected = {"api.bicep", "storage.bicep", "keyvault.bicep", "network.bicep"}
    assert expected <= scanned, f"checkov did not scan {sorted(expected - scanned)}"
    used = {(Path(c["file_path"]).name, c["check_id"]) for c in results.get("skipped_checks", [])}
    for path in report["scan"].rglob("*.bicep"):
        for check, reason in re.findall(r"//\s*checkov:skip=(CKV\w+):(.*)", path.read_text()):
            assert len(reason.strip()) > 20, f"{path.name} {check}: give the reason"
            assert (path.name, check) in used, f"{path.name}: stale checkov skip {check} ({mode})"
    passed = {(Path(c["file_path"]).name, c["check_id"]) for c in results.get("passed_checks", [])}
    if mode == "vnet":
        # no network skip left, and the network checks pass on both accounts and the vault
        assert not {check for _, check in used} & NETWORK_CHECKS
        assert {("storage.bicep", "CKV_AZURE_35"), ("storage.bicep", "CKV_AZURE_59")} <= passed
        assert {("keyvault.bicep", "CKV_AZURE_109"), ("keyvault.bicep", "CKV_AZURE_189")} <= passed
    # purge protection is on in every mode by default: no skip needed for it
    assert ("keyvault.bicep", "CKV_AZURE_110") in passed


def test_no_object_in_the_bicep_names_a_key_twice() -> None:
    """Bicep refuses an object with a duplicate property (BCP025), and pycep keeps the last one
    silently: merged branches that both add an app setting are caught here instead."""
    for path in sorted(INFRA.rglob("*.bicep")):
        stack: list[set[str]] = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0].rstrip()
            key = re.match(r"^\s*'?([A-Za-z_][\w.-]*)'?\s*:\s*\S", code)
            if key and stack and not code.lstrip().startswith(("resource ", "module ")):
                assert key.group(1) not in stack[-1], f"{path.name}:{number}: {key.group(1)} twice"
                stack[-1].add(key.group(1))
            for ch in code:
                if ch == "{":
                    stack.append(set())
                elif ch == "}" and stack:
                    stack.pop()
