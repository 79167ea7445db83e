"""Settings: defaults, derivations, and one clear line for each missing or malformed one."""

from __future__ import annotations

import pytest

from shared.settings import SettingError, lifecycle_url_from, load_settings

SECRET = "0123456789abcdef0123456789abcdef"  # 32 characters, the shortest accepted
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "GRAPH_CLIENT_STATE": SECRET}


def test_defaults_are_the_documented_ones() -> None:
    s = load_settings(BASE)
    assert s.archive_container == "callrecords"
    assert s.queue_name == "callrecords"
    assert s.poison_queue_name == "callrecords-poison"
    assert s.graph_base_url == "https://graph.microsoft.com"
    assert s.graph_scope == "https://graph.microsoft.com/.default"
    assert s.retry_base_seconds == 60
    assert s.retry_window_minutes == 240
    assert s.archive_storage == s.host_storage  # ARCHIVE_STORAGE falls back
    assert s.notification_url is None and s.lifecycle_notification_url is None


def test_identity_based_storage_and_lifecycle_url_derived() -> None:
    env = {
        "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555",
        "ARCHIVE_STORAGE__blobServiceUri": "https://arch.blob.core.windows.net",
        "GRAPH_CLIENT_STATE": SECRET,
        "GRAPH_BASE_URL": "https://graph.microsoft.us/",
        "NOTIFICATION_URL": "https://app.example.net/api/notifications?code=abc",
        "AZURE_CLIENT_ID": "99999999-2222-3333-4444-555555555555",
    }
    s = load_settings(env)
    assert s.host_storage.queue_uri == "https://acct.queue.core.windows.net"
    assert s.host_storage.client_id == "11111111-2222-3333-4444-555555555555"
    assert s.archive_storage.blob_uri == "https://arch.blob.core.windows.net"
    assert s.archive_storage.client_id == "99999999-2222-3333-4444-555555555555"
    assert s.graph_base_url == "https://graph.microsoft.us"
    assert s.lifecycle_notification_url == "https://app.example.net/api/lifecycle?code=abc"
    assert "managed identity" in s.host_storage.describe()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GRAPH_CLIENT_STATE": "x"}, "AzureWebJobsStorage is not set"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "GRAPH_CLIENT_STATE is not set"),
        ({**BASE, "GRAPH_CLIENT_STATE": "x" * 129}, "GRAPH_CLIENT_STATE is malformed"),
        (
            {**BASE, "GRAPH_CLIENT_STATE": "@Microsoft.KeyVault(SecretUri=https://v/secrets/s)"},
            "GRAPH_CLIENT_STATE is an unresolved Key Vault reference",
        ),
        ({**BASE, "AzureWebJobsStorage": "hello"}, "AzureWebJobsStorage is malformed"),
        ({**BASE, "ARCHIVE_CONTAINER": "Bad_Name"}, "ARCHIVE_CONTAINER is malformed"),
        ({**BASE, "CALLRECORDS_QUEUE": "ab"}, "CALLRECORDS_QUEUE is malformed"),
        ({**BASE, "GRAPH_BASE_URL": "graph.microsoft.com"}, "GRAPH_BASE_URL is malformed"),
        ({**BASE, "GRAPH_BASE_URL": "http://graph.microsoft.com"}, "GRAPH_BASE_URL must be"),
        ({**BASE, "GRAPH_BASE_URL": "http://10.0.0.5:8055"}, "GRAPH_BASE_URL must be"),
        ({**BASE, "GRAPH_CLIENT_STATE": SECRET[:-1]}, "GRAPH_CLIENT_STATE is too short"),
        (
            {**BASE, "GRAPH_CLIENT_STATE_PREVIOUS": "old"},
            "GRAPH_CLIENT_STATE_PREVIOUS is too short",
        ),
        (
            {**BASE, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0"},
            "GRAPH_BASE_URL is malformed",
        ),
        ({**BASE, "NOTIFICATION_URL": "/api/notifications"}, "NOTIFICATION_URL is malformed"),
        ({**BASE, "ARCHIVE_RETRY_BASE_SECONDS": "soon"}, "ARCHIVE_RETRY_BASE_SECONDS is malformed"),
        (
            {**BASE, "ARCHIVE_RETRY_WINDOW_MINUTES": "-5"},
            "ARCHIVE_RETRY_WINDOW_MINUTES is malformed",
        ),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingError) as err:
        load_settings(env)
    message = str(err.value)
    assert message.startswith(named)
    assert "\n" not in message


def test_connection_string_key_never_in_description() -> None:
    conn = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=SECRETKEY==;BlobEndpoint=http://127.0.0.1:1/a;"
    s = load_settings({**BASE, "AzureWebJobsStorage": conn})
    assert "SECRETKEY" not in s.host_storage.describe()


def test_notification_url_required_only_to_manage_subscriptions() -> None:
    with pytest.raises(SettingError, match=r"^NOTIFICATION_URL is not set"):
        load_settings(BASE).require_notification_url()


def test_lifecycle_url_from_other_paths() -> None:
    assert lifecycle_url_from("https://h/api/notifications") == "https://h/api/lifecycle"
    assert lifecycle_url_from("https://h/hook/") == "https://h/hook/lifecycle"


@pytest.mark.parametrize("setting", ["NOTIFICATION_URL", "LIFECYCLE_NOTIFICATION_URL"])
def test_webhook_urls_must_be_https_except_loopback(setting: str) -> None:
    for url in ("http://app.example.net/api/notifications", "http://10.0.0.4/api/x"):
        with pytest.raises(SettingError, match=rf"^{setting} must be an https:// URL"):
            load_settings({**BASE, setting: url})
    for url in (
        "https://app.example.net/api/notifications",
        "http://127.0.0.1:7071/api/notifications",
        "http://localhost:7071/api/notifications",
        "http://[::1]:7071/api/notifications",
    ):
        load_settings({**BASE, setting: url})


def test_participants_v2_by_cloud_and_pacing_settings() -> None:
    from shared.settings import FIRST_PAGE_PACE, NEXT_PAGES_PACE, Pace

    default = load_settings(BASE)
    assert default.participants_v2 is True
    assert (default.first_page_pace, default.next_pages_pace) == (FIRST_PAGE_PACE, NEXT_PAGES_PACE)
    assert (FIRST_PAGE_PACE, NEXT_PAGES_PACE) == (Pace(10, 20.0), Pace(50, 300.0))
    for root in ("https://graph.microsoft.us", "https://dod-graph.microsoft.us"):
        assert load_settings({**BASE, "GRAPH_BASE_URL": root}).participants_v2 is False
        on = {**BASE, "GRAPH_BASE_URL": root, "GRAPH_PARTICIPANTS_V2": "on"}
        assert load_settings(on).participants_v2 is True
    assert load_settings({**BASE, "GRAPH_PARTICIPANTS_V2": "OFF"}).participants_v2 is False
    paced = load_settings({**BASE, "GRAPH_RECORD_NEXT_PAGES_PACE": "50/10"})
    assert paced.next_pages_pace == Pace(50, 10.0)
    for bad in ("50", "0/10", "x/y", "10/-1"):
        with pytest.raises(SettingError, match=r"^GRAPH_RECORD_NEXT_PAGES_PACE is malformed"):
            load_settings({**BASE, "GRAPH_RECORD_NEXT_PAGES_PACE": bad})
    with pytest.raises(SettingError, match=r"^GRAPH_PARTICIPANTS_V2 is malformed"):
        load_settings({**BASE, "GRAPH_PARTICIPANTS_V2": "maybe"})


@pytest.mark.parametrize(
    ("graph", "kinds"),
    [
        ("https://graph.microsoft.com", ("pstn", "directrouting")),
        ("https://graph.microsoft.us", ("pstn",)),
        ("https://dod-graph.microsoft.us", ("pstn",)),
        ("https://microsoftgraph.chinacloudapi.cn", ()),
    ],
)
def test_usage_logs_by_cloud(graph: str, kinds: tuple[str, ...]) -> None:
    env = {**BASE, "GRAPH_BASE_URL": graph}
    assert load_settings(env).usage_kinds == kinds
    assert load_settings({**env, "USAGE_LOGS_KINDS": "auto"}).usage_kinds == kinds
    chosen = load_settings({**env, "USAGE_LOGS_KINDS": " DirectRouting, pstn ,pstn"})
    assert chosen.usage_kinds == ("directrouting", "pstn")
    assert load_settings({**env, "USAGE_LOGS_KINDS": "none"}).usage_kinds == ()


@pytest.mark.parametrize("raw", ["sms", ",", "pstn;directrouting"])
def test_malformed_usage_logs_kinds_name_the_setting(raw: str) -> None:
    with pytest.raises(SettingError, match="USAGE_LOGS_KINDS is malformed"):
        load_settings({**BASE, "USAGE_LOGS_KINDS": raw})


def test_sweep_grace_and_reread_settings() -> None:
    s = load_settings(BASE)
    assert (s.reconcile_sweep_hours, s.permission_grace_hours) == (168, 48.0)
    assert (s.usage_reread_days, s.usage_reread_every_hours) == (7, 24.0)
    s = load_settings(
        {
            **BASE,
            "RECONCILE_SWEEP_HOURS": "24",
            "GRAPH_PERMISSION_GRACE_HOURS": "0",
            "USAGE_LOGS_REREAD_EVERY_HOURS": "0",
        }
    )
    assert (s.reconcile_sweep_hours, s.permission_grace_hours, s.usage_reread_every_hours) == (
        24,
        0.0,
        0.0,
    )
    for setting in ("RECONCILE_SWEEP_HOURS", "USAGE_LOGS_REREAD_DAYS"):
        with pytest.raises(SettingError, match=setting):
            load_settings({**BASE, setting: "0"})
    with pytest.raises(SettingError, match="GRAPH_PERMISSION_GRACE_HOURS"):
        load_settings({**BASE, "GRAPH_PERMISSION_GRACE_HOURS": "-1"})


def test_the_deep_pass_hour_is_a_utc_hour() -> None:
    assert load_settings(BASE).reconcile_deep_pass_hour == 2
    assert load_settings({**BASE, "RECONCILE_DEEP_PASS_HOUR": "0"}).reconcile_deep_pass_hour == 0
    assert load_settings({**BASE, "RECONCILE_DEEP_PASS_HOUR": "23"}).reconcile_deep_pass_hour == 23
    for bad in ("24", "-1", "2.5", "two"):
        with pytest.raises(SettingError, match="RECONCILE_DEEP_PASS_HOUR is malformed"):
            load_settings({**BASE, "RECONCILE_DEEP_PASS_HOUR": bad})


@pytest.mark.parametrize(
    "graph", ["http://127.0.0.1:8055", "http://localhost:8055", "http://[::1]:1"]
)
def test_a_loopback_graph_may_be_plain_http_with_a_short_secret(graph: str) -> None:
    """The simulator and the tests: nothing leaves the machine."""
    s = load_settings({**BASE, "GRAPH_BASE_URL": graph, "GRAPH_CLIENT_STATE": "x"})
    assert s.graph_base_url == graph and s.client_state == "x"


def test_unsafe_settings_fail_in_one_line_that_names_the_fix() -> None:
    with pytest.raises(SettingError) as err:
        load_settings({**BASE, "GRAPH_CLIENT_STATE": "short"})
    assert "\n" not in str(err.value) and "openssl rand" in str(err.value)
    with pytest.raises(SettingError) as err:
        load_settings({**BASE, "GRAPH_BASE_URL": "http://graph.microsoft.com"})
    assert "\n" not in str(err.value) and "https://graph.microsoft.com" in str(err.value)
