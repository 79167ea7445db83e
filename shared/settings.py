"""App settings, read once and checked up front, so a misconfiguration fails in one clear line.

The names are the app's interface (README.md lists them): Bicep sets them in Azure, local.settings.json or the
environment sets them locally. Nothing else in the code reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

from shared.jsonvalues import as_object

# Every app setting the code reads (the infra tests check that Bicep sets each one).
SETTING_NAMES: tuple[str, ...] = (
    "AzureWebJobsStorage",
    "ARCHIVE_STORAGE",
    "ARCHIVE_CONTAINER",
    "CALLRECORDS_QUEUE",
    "GRAPH_BASE_URL",
    "GRAPH_CLIENT_STATE",
    "GRAPH_CLIENT_STATE_PREVIOUS",
    "NOTIFICATION_URL",
    "LIFECYCLE_NOTIFICATION_URL",
    "AZURE_CLIENT_ID",
    "ARCHIVE_RETRY_BASE_SECONDS",
    "ARCHIVE_RETRY_WINDOW_MINUTES",
    "USAGE_LOGS_BACKFILL_DAYS",
    "ANALYTICS_CONTAINER",
    "ARCHIVE_FETCH_BUDGET_SECONDS",
    "GRAPH_PARTICIPANTS_V2",
    "GRAPH_RECORD_FIRST_PAGE_PACE",
    "GRAPH_RECORD_NEXT_PAGES_PACE",
    "ARCHIVE_RETRY_MAX_SECONDS",
    "ARCHIVE_GIVE_UP_HOURS",
    "ARCHIVE_MAX_LARGE_FETCHES",
    "POISON_ALERT_HOURS",
    "RECONCILE_RECENT_HOURS",
    "RECONCILE_SWEEP_HOURS",
    "GRAPH_PERMISSION_GRACE_HOURS",
    "USAGE_LOGS_REREAD_DAYS",
    "USAGE_LOGS_REREAD_EVERY_HOURS",
    "USAGE_LOGS_KINDS",
)

_STORAGE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
MAX_CLIENT_STATE = 128
# The clientState is the webhooks' only proof that a POST comes from Graph: 32 characters of a
# random string are beyond guessing. Shorter ones are accepted against a loopback Graph only
# (the simulator, tests).
MIN_CLIENT_STATE = 32


class ParticipantsMode(StrEnum):
    """GRAPH_PARTICIPANTS_V2: whether records are fetched with their participants_v2 pages."""

    AUTO = "auto"  # by cloud: on for the global service, off for the national clouds
    ON = "on"
    OFF = "off"


# The usage logs the hourly sync reads (USAGE_LOGS_KINDS); the values are
# shared/usage/kinds.py's UsageKind values.
USAGE_LOG_NAMES = ("pstn", "directrouting")


# By cloud, as participants_v2 below: both logs in the global service; PSTN only in the US
# Government clouds, where Direct Routing is treated as global-only (the stricter reading: the
# national cloud table of learn.microsoft.com/graph/api/callrecords-callrecord-getdirectroutingcalls
# now lists US Government L4/L5 too, other sources call it global-only; a tenant there sets
# USAGE_LOGS_KINDS=pstn,directrouting); in China (21Vianet) neither, as the tables of
# getPstnCalls and getDirectRoutingCalls both say.
USAGE_LOGS_BY_HOST: dict[str, tuple[str, ...]] = {
    "graph.microsoft.us": ("pstn",),
    "dod-graph.microsoft.us": ("pstn",),
    "microsoftgraph.chinacloudapi.cn": (),
}


# participants_v2 is documented for the global service only
# (learn.microsoft.com/graph/api/callrecords-callrecord-list-participants_v2, national cloud
# table): US Government L4/L5 and China do not serve it.
NATIONAL_GRAPH_HOSTS = (
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
)


@dataclass(frozen=True)
class Pace:
    """At most ``requests`` in any ``seconds``."""

    requests: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}"


# Per call record, the stricter revision of learn.microsoft.com/graph/throttling-limits
# (Cloud communication service limits): 10 requests / 20 s for the first page, 50 / 5 min
# for the pages that follow.
FIRST_PAGE_PACE = Pace(10, 20.0)
NEXT_PAGES_PACE = Pace(50, 300.0)
# host.json sets functionTimeout to Flex Consumption's default, 30 minutes (shared/hostconfig.py):
# a fetch stops at a checkpoint well before it and continues in a new invocation.
FETCH_BUDGET_SECONDS = 300


class SettingError(ValueError):
    """A setting is missing or malformed; the message names it and says what it should hold."""


@dataclass(frozen=True)
class StorageTarget:
    """Where a storage account is: a connection string, or service URIs plus a managed identity."""

    setting: str
    connection_string: str | None = None
    blob_uri: str | None = None
    queue_uri: str | None = None
    client_id: str | None = None

    def describe(self) -> str:
        """A log-safe description (never the account key)."""
        if self.connection_string:
            m = re.search(r"BlobEndpoint=([^;]+)", self.connection_string)
            return f"{self.setting} (connection string{', ' + m.group(1) if m else ''})"
        return f"{self.setting} ({self.blob_uri or self.queue_uri}, managed identity)"


@dataclass(frozen=True)
class Settings:
    """Every app setting, parsed."""

    host_storage: StorageTarget
    archive_storage: StorageTarget
    archive_container: str
    queue_name: str
    graph_base_url: str
    client_state: str
    client_state_previous: str | None
    notification_url: str | None
    lifecycle_notification_url: str | None
    client_id: str | None
    retry_base_seconds: int
    retry_window_minutes: int
    # PSTN / Direct Routing logs: how far back the first hourly run reads (Graph keeps them
    # for months, by country).
    usage_backfill_days: int = 90
    # Derived Parquet tables, in the archive's storage account (shared/analytics/).
    analytics_container: str = "callrecords-tables"
    participants_mode: ParticipantsMode = ParticipantsMode.AUTO
    first_page_pace: Pace = FIRST_PAGE_PACE
    next_pages_pace: Pace = NEXT_PAGES_PACE
    fetch_budget_seconds: int = FETCH_BUDGET_SECONDS

    @property
    def participants_v2(self) -> bool:
        """Fetch participants_v2? ``auto``: yes except in the national clouds."""
        if self.participants_mode is ParticipantsMode.AUTO:
            return urlsplit(self.graph_base_url).hostname not in NATIONAL_GRAPH_HOSTS
        return self.participants_mode is ParticipantsMode.ON

    retry_max_seconds: int = 1800
    give_up_hours: float = 24.0
    max_large_fetches: int = 4
    poison_alert_hours: float = 0.0
    reconcile_recent_hours: int = 4
    # The UTC hour whose reconcile run lists the last 48 hours instead of the recent ones.
    reconcile_deep_pass_hour: int = 2
    # Runs (hours, with the hourly timer) one rolling sweep of Graph's 30 days takes
    # (shared/sweep.py): weekly by default.
    reconcile_sweep_hours: int = 168
    # A Graph 403 is retried, not parked, for this long after it is first seen
    # (shared/permission.py); 0 parks at once.
    permission_grace_hours: float = 48.0
    # Late usage rows: every sync re-reads at least 3 days; once every
    # usage_reread_every_hours (0: every run) it re-reads usage_reread_days.
    usage_reread_days: int = 7
    usage_reread_every_hours: float = 24.0
    # USAGE_LOGS_KINDS as given; None: by cloud (usage_kinds)
    usage_kinds_setting: tuple[str, ...] | None = None

    @property
    def usage_kinds(self) -> tuple[str, ...]:
        """The usage logs to sync (USAGE_LOGS_KINDS; ``auto``: by cloud, USAGE_LOGS_BY_HOST)."""
        if self.usage_kinds_setting is not None:
            return self.usage_kinds_setting
        host = urlsplit(self.graph_base_url).hostname or ""
        return USAGE_LOGS_BY_HOST.get(host, USAGE_LOG_NAMES)

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    @property
    def state_container_name(self) -> str:
        """The app's own state (subscription fingerprint, fetch checkpoints), in host storage."""
        return f"{self.queue_name[:57]}-state"

    @property
    def client_states(self) -> tuple[str, ...]:
        """Secrets a notification may carry: the current one, and the previous during a
        rotation (GRAPH_CLIENT_STATE_PREVIOUS)."""
        if self.client_state_previous and self.client_state_previous != self.client_state:
            return (self.client_state, self.client_state_previous)
        return (self.client_state,)

    @property
    def activity_container(self) -> str:
        """Host-storage container of the archiver's activity log (shared/activity.py)."""
        return f"{self.queue_name[:54].rstrip('-')}-activity"

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_base_url}/.default"

    def require_notification_url(self) -> str:
        """The public webhook URL, needed only to create subscriptions."""
        if not self.notification_url:
            raise SettingError(
                "NOTIFICATION_URL is not set: it must hold the public HTTPS URL of "
                "/api/notifications, e.g. https://<app>.azurewebsites.net/api/notifications"
            )
        return self.notification_url


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value and value.strip() else None


def _storage(env: Mapping[str, str], name: str, client_id: str | None) -> StorageTarget | None:
    conn = _get(env, name)
    if conn:
        if conn == "UseDevelopmentStorage=true" or "AccountName=" in conn or "Endpoint=" in conn:
            return StorageTarget(name, connection_string=conn)
        raise SettingError(
            f"{name} is malformed: it must be a storage connection string "
            "(or unset, with the identity-based "
            f"{name}__blobServiceUri / {name}__queueServiceUri form)"
        )
    blob = _get(env, f"{name}__blobServiceUri")
    queue = _get(env, f"{name}__queueServiceUri")
    account = _get(env, f"{name}__accountName")
    if account and not blob:
        blob = f"https://{account}.blob.core.windows.net"
    if account and not queue:
        queue = f"https://{account}.queue.core.windows.net"
    if not (blob or queue):
        return None
    for setting, uri in ((f"{name}__blobServiceUri", blob), (f"{name}__queueServiceUri", queue)):
        if uri and urlsplit(uri).scheme not in ("https", "http"):
            raise SettingError(f"{setting} is malformed: it must be an https:// service URI")
    return StorageTarget(
        name, blob_uri=blob, queue_uri=queue, client_id=_get(env, f"{name}__clientId") or client_id
    )


def _name(env: Mapping[str, str], setting: str, default: str) -> str:
    value = _get(env, setting) or default
    if not _STORAGE_NAME.match(value):
        raise SettingError(
            f"{setting} is malformed: {value!r} must be 3-63 lowercase letters, digits or hyphens"
        )
    return value


def _positive_int(env: Mapping[str, str], setting: str, default: int) -> int:
    raw = _get(env, setting)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SettingError(f"{setting} is malformed: {raw!r} must be a positive whole number")
    return value


def _utc_hour(env: Mapping[str, str], setting: str, default: int) -> int:
    raw = _get(env, setting)
    if raw is None:
        return default
    if not raw.strip().isdigit() or not 0 <= int(raw) <= 23:
        raise SettingError(f"{setting} is malformed: {raw!r} must be a UTC hour, 0 to 23")
    return int(raw)


def _pace(env: Mapping[str, str], setting: str, default: Pace) -> Pace:
    raw = _get(env, setting)
    if raw is None:
        return default
    count, _, period = raw.partition("/")
    try:
        pace = Pace(int(count), float(period))
    except ValueError:
        pace = Pace(0, 0.0)
    if pace.requests <= 0 or pace.seconds <= 0:
        raise SettingError(
            f"{setting} is malformed: {raw!r} must be requests/seconds, e.g. {default}"
        )
    return pace


def _participants(env: Mapping[str, str]) -> ParticipantsMode:
    raw = (_get(env, "GRAPH_PARTICIPANTS_V2") or "auto").lower()
    try:
        return ParticipantsMode(raw)
    except ValueError:
        raise SettingError(
            f"GRAPH_PARTICIPANTS_V2 is malformed: {raw!r} must be auto, on or off"
        ) from None


def _usage_kinds(env: Mapping[str, str]) -> tuple[str, ...] | None:
    raw = (_get(env, "USAGE_LOGS_KINDS") or "auto").lower()
    if raw == "auto":
        return None
    if raw == "none":
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in USAGE_LOG_NAMES]
    if unknown or not names:
        raise SettingError(
            f"USAGE_LOGS_KINDS is malformed: {raw!r} must be auto, none or a comma-separated list of "
            f"{', '.join(USAGE_LOG_NAMES)} (e.g. pstn,directrouting)"
        )
    return names


def _hours(env: Mapping[str, str], setting: str, default: float, zero_ok: bool = False) -> float:
    """A number of hours (fractions allowed, so tests can scale a day down to minutes)."""
    raw = _get(env, setting)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value != value or value < 0 or (value == 0 and not zero_ok) or value > 24 * 365:
        what = "a number of hours >= 0" if zero_ok else "a positive number of hours"
        raise SettingError(f"{setting} is malformed: {raw!r} must be {what}")
    return value


def _url(env: Mapping[str, str], setting: str) -> str | None:
    raw = _get(env, setting)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise SettingError(f"{setting} is malformed: it must be an absolute https:// URL")
    return raw


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook_url(env: Mapping[str, str], setting: str) -> str | None:
    """A URL Graph will POST to: Graph accepts only HTTPS notification URLs
    (learn.microsoft.com/graph/change-notifications-delivery-webhooks); plain HTTP is allowed
    for loopback only (the local simulator and development host)."""
    url = _url(env, setting)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not is_loopback(parts.hostname):
            raise SettingError(
                f"{setting} must be an https:// URL: Graph delivers notifications over HTTPS "
                f"only (http:// is accepted for loopback hosts), got {parts.scheme}://{parts.hostname}"
            )
    return url


def local_settings_env(app_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment over ``local.settings.json`` Values, as ``func start`` merges them.

    The environment wins unless its value is empty; the file is optional. Used by the
    development host and cli.py, so a local run and an operator command see the same settings.
    """
    env = dict(os.environ if environ is None else environ)
    path = app_dir / "local.settings.json"
    if not path.exists():
        return env
    try:
        document = as_object(orjson.loads(path.read_bytes()))
    except orjson.JSONDecodeError:
        document = None
    if document is None:
        raise SettingError(f"{path} is malformed: it must be JSON with a Values object")
    values = as_object(document.get("Values") or {})
    if values is None:
        raise SettingError(f"{path} is malformed: Values must be an object")
    for key, value in values.items():
        if value is not None and env.get(key) in (None, ""):
            env[key] = str(value)
    return env


def lifecycle_url_from(notification_url: str) -> str:
    """``.../api/notifications?code=x`` -> ``.../api/lifecycle?code=x`` (query kept)."""
    parts = urlsplit(notification_url)
    path = parts.path
    path = (
        path[: -len("notifications")] + "lifecycle"
        if path.endswith("notifications")
        else path.rstrip("/") + "/lifecycle"
    )
    return urlunsplit(parts._replace(path=path))


def _check_secret(setting: str, value: str, loopback_graph: bool) -> None:
    if value.startswith("@Microsoft.KeyVault("):
        raise SettingError(
            f"{setting} is an unresolved Key Vault reference: grant the app's identity "
            "Key Vault Secrets User on the secret (infra/app/keyvault.bicep) and restart"
        )
    if len(value) > MAX_CLIENT_STATE:
        raise SettingError(
            f"{setting} is malformed: Graph accepts at most {MAX_CLIENT_STATE} characters"
        )
    if len(value) < MIN_CLIENT_STATE and not loopback_graph:
        raise SettingError(
            f"{setting} is too short ({len(value)} characters): it must hold at least "
            f"{MIN_CLIENT_STATE} random characters, e.g. the output of `openssl rand -hex 32`"
        )


def _graph_base_url(env: Mapping[str, str]) -> str:
    """GRAPH_BASE_URL: HTTPS, except a loopback simulator. The bearer token for the managed
    identity travels in every request to it, so plain HTTP would hand the token to anyone on
    the path."""
    graph = _url(env, "GRAPH_BASE_URL") or "https://graph.microsoft.com"
    parts = urlsplit(graph)
    if parts.path.strip("/"):
        raise SettingError(
            "GRAPH_BASE_URL is malformed: it must be the Graph root without a version, "
            "e.g. https://graph.microsoft.com"
        )
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise SettingError(
            f"GRAPH_BASE_URL must be an https:// URL (got {parts.scheme}://{parts.hostname}): "
            "set it to https://graph.microsoft.com or your national cloud's Graph root; "
            "http:// is accepted for loopback hosts only"
        )
    return graph


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and check every setting; raise SettingError naming the first bad one."""
    env = os.environ if env is None else env
    client_id = _get(env, "AZURE_CLIENT_ID")
    host = _storage(env, "AzureWebJobsStorage", client_id)
    if host is None:
        raise SettingError(
            "AzureWebJobsStorage is not set: it must hold a storage connection string "
            "(UseDevelopmentStorage=true locally) or the identity-based "
            "AzureWebJobsStorage__blobServiceUri/__queueServiceUri settings"
        )
    archive = _storage(env, "ARCHIVE_STORAGE", client_id) or host

    graph = _graph_base_url(env)
    loopback_graph = is_loopback(urlsplit(graph).hostname)

    client_state = env.get("GRAPH_CLIENT_STATE") or ""
    if not client_state:
        raise SettingError(
            "GRAPH_CLIENT_STATE is not set: it must hold the subscription secret "
            f"({MIN_CLIENT_STATE}-{MAX_CLIENT_STATE} random characters)"
        )
    _check_secret("GRAPH_CLIENT_STATE", client_state, loopback_graph)
    previous = env.get("GRAPH_CLIENT_STATE_PREVIOUS") or None
    if previous is not None:
        _check_secret("GRAPH_CLIENT_STATE_PREVIOUS", previous, loopback_graph)

    notification = _webhook_url(env, "NOTIFICATION_URL")
    lifecycle = _webhook_url(env, "LIFECYCLE_NOTIFICATION_URL") or (
        lifecycle_url_from(notification) if notification else None
    )
    return Settings(
        host_storage=host,
        archive_storage=archive,
        archive_container=_name(env, "ARCHIVE_CONTAINER", "callrecords"),
        queue_name=_name(env, "CALLRECORDS_QUEUE", "callrecords"),
        graph_base_url=graph.rstrip("/"),
        client_state=client_state,
        client_state_previous=previous,
        notification_url=notification,
        lifecycle_notification_url=lifecycle,
        client_id=client_id,
        retry_base_seconds=_positive_int(env, "ARCHIVE_RETRY_BASE_SECONDS", 60),
        retry_window_minutes=_positive_int(env, "ARCHIVE_RETRY_WINDOW_MINUTES", 240),
        usage_backfill_days=_positive_int(env, "USAGE_LOGS_BACKFILL_DAYS", 90),
        analytics_container=_name(env, "ANALYTICS_CONTAINER", "callrecords-tables"),
        participants_mode=_participants(env),
        first_page_pace=_pace(env, "GRAPH_RECORD_FIRST_PAGE_PACE", FIRST_PAGE_PACE),
        next_pages_pace=_pace(env, "GRAPH_RECORD_NEXT_PAGES_PACE", NEXT_PAGES_PACE),
        fetch_budget_seconds=_positive_int(
            env, "ARCHIVE_FETCH_BUDGET_SECONDS", FETCH_BUDGET_SECONDS
        ),
        retry_max_seconds=_positive_int(env, "ARCHIVE_RETRY_MAX_SECONDS", 1800),
        give_up_hours=_hours(env, "ARCHIVE_GIVE_UP_HOURS", 24.0),
        max_large_fetches=_positive_int(env, "ARCHIVE_MAX_LARGE_FETCHES", 4),
        poison_alert_hours=_hours(env, "POISON_ALERT_HOURS", 0.0, zero_ok=True),
        reconcile_recent_hours=min(_positive_int(env, "RECONCILE_RECENT_HOURS", 4), 48),
        reconcile_deep_pass_hour=_utc_hour(env, "RECONCILE_DEEP_PASS_HOUR", 2),
        reconcile_sweep_hours=_positive_int(env, "RECONCILE_SWEEP_HOURS", 168),
        permission_grace_hours=_hours(env, "GRAPH_PERMISSION_GRACE_HOURS", 48.0, zero_ok=True),
        usage_reread_days=_positive_int(env, "USAGE_LOGS_REREAD_DAYS", 7),
        usage_reread_every_hours=_hours(env, "USAGE_LOGS_REREAD_EVERY_HOURS", 24.0, zero_ok=True),
        usage_kinds_setting=_usage_kinds(env),
    )
