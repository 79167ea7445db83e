"""``cli.py usage backfill`` and ``cli.py usage report`` as an operator runs them (subprocess,
Azurite, the simulator), the report checked against an independent computation."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from azure.storage.blob import ContainerClient

from shared.clock import parse_graph_datetime, utcnow
from tests.integration.conftest import unique
from tests.integration.test_cli import one_error_line, run_cli

pytestmark = pytest.mark.e2e


def _names(conn: str, container: str, prefix: str) -> list[str]:
    client = ContainerClient.from_connection_string(conn, container)
    try:
        return sorted(b.name for b in client.list_blobs(name_starts_with=prefix))
    finally:
        client.close()


def _blob_name(prefix: str, row: dict[str, Any]) -> str:
    start = parse_graph_datetime(row["startDateTime"])
    return f"{prefix}{start:%Y/%m/%d}/{row['id']}.json"


def test_backfill_over_90_days_is_split_and_safe_to_repeat(app_env: Any, fresh_sim: Any) -> None:
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    ContainerClient.from_connection_string(conn, container).create_container()
    sim = fresh_sim.client
    now = utcnow()
    # Rows across 200 days: one request for all of them would be refused (90 days at most).
    sim.add_usage_rows("pstn", 400, now - timedelta(days=199), now - timedelta(hours=1))
    sim.add_usage_rows("directrouting", 60, now - timedelta(days=150), now - timedelta(days=1))

    first = run_cli("usage", "backfill", "--since", "200d")
    assert first.returncode == 0, first.stderr
    assert "3 range(s) of up to 90 days" in first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines == [
        "PSTN: 400 rows listed, 400 written, 0 already archived",
        "Direct Routing: 60 rows listed, 60 written, 0 already archived",
    ]
    stats = sim.stats()["responses_by_kind"]
    assert stats["pstn_calls"] == {"200": 3} and "400" not in stats["direct_routing_calls"]
    expected = sorted(_blob_name("pstn/", r) for r in sim.usage_rows("pstn"))
    assert _names(conn, container, "pstn/") == expected

    again = run_cli("usage", "backfill", "--since", "200d", "--kind", "pstn")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "PSTN: 400 rows listed, 0 written, 400 already archived"
    assert _names(conn, container, "pstn/") == expected

    sim.add_usage_rows("directrouting", 5, now - timedelta(days=3), now - timedelta(days=2))
    dry = run_cli("usage", "backfill", "--since", "7d", "--kind", "directrouting", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    recent = [
        r
        for r in sim.usage_rows("directrouting")
        if parse_graph_datetime(r["startDateTime"]) >= now - timedelta(days=7)
    ]
    listed = len(recent)
    assert dry.stdout.strip() == (
        f"Direct Routing: {listed} rows listed, 5 would write, {listed - 5} already archived"
    )
    assert len(_names(conn, container, "directrouting/")) == 60  # nothing written


def test_backfill_bad_input_is_one_line(app_env: Any) -> None:
    result = run_cli("usage", "backfill", "--since", "1d", "--until", "3d")
    assert result.returncode == 1
    assert "empty range" in one_error_line(result)
    result = run_cli("usage", "backfill", "--since", "yesterday")
    assert result.returncode == 2 and "neither a duration" in result.stderr
    result = run_cli("usage", "backfill", "--since", "1d", "--kind", "sms")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def independent_report(rows_pstn: list[dict], rows_dr: list[dict], since, until) -> dict:
    """The same figures as the report, computed here in plain Python from the simulator's
    rows (not from the archive or the tables)."""

    def inside(row: dict) -> bool:
        return since <= parse_graph_datetime(row["startDateTime"]) < until

    pstn: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for row in filter(inside, rows_pstn):
        key = (row["userPrincipalName"], row["destinationName"], row["currency"])
        pstn[key][0] += 1
        pstn[key][1] += row["duration"]
        pstn[key][2] += row["charge"]
    by_user: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    sip: dict[int, int] = defaultdict(int)
    for row in filter(inside, rows_dr):
        entry = by_user[row["userPrincipalName"]]
        entry[0] += 1
        entry[1] += 0 if row["successfulCall"] else 1
        entry[2] += row["duration"]
        if not row["successfulCall"]:
            sip[row["finalSipCode"]] += 1
    return {
        "pstn": {
            (u, d, c): (n, round(s / 60, 2), round(ch, 2)) for (u, d, c), (n, s, ch) in pstn.items()
        },
        "dr_users": {u: (n, f, round(s / 60, 2)) for u, (n, f, s) in by_user.items()},
        "sip": dict(sip),
    }


def test_report_json_matches_an_independent_computation(app_env: Any, fresh_sim: Any) -> None:
    conn, container = app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"]
    ContainerClient.from_connection_string(conn, container).create_container()
    sim = fresh_sim.client
    now = utcnow()
    sim.add_usage_rows("pstn", 600, now - timedelta(days=40), now - timedelta(minutes=30))
    sim.add_usage_rows("directrouting", 500, now - timedelta(days=40), now - timedelta(minutes=30))
    assert run_cli("usage", "backfill", "--since", "41d").returncode == 0
    analytics = unique("t")

    result = run_cli("usage", "report", "--since", "30d", "--json", ANALYTICS_CONTAINER=analytics)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    since = parse_graph_datetime(report["since"])
    until = parse_graph_datetime(report["until"])
    assert timedelta(days=30) - (until - since) < timedelta(minutes=1)
    want = independent_report(sim.usage_rows("pstn"), sim.usage_rows("directrouting"), since, until)

    got_pstn = {
        (r["user"], r["destination"], r["currency"]): (r["calls"], r["minutes"], r["charges"])
        for r in report["pstn"]["by_user_destination"]
    }
    assert got_pstn.keys() == want["pstn"].keys()
    for key, (calls, minutes, charges) in want["pstn"].items():
        assert got_pstn[key][0] == calls
        assert got_pstn[key][1:] == pytest.approx((minutes, charges), abs=0.011)
    assert report["pstn"]["calls"] == sum(v[0] for v in want["pstn"].values()) > 300

    got_users = {
        r["user"]: (r["calls"], r["failed"], r["minutes"])
        for r in report["direct_routing"]["by_user"]
    }
    assert got_users.keys() == want["dr_users"].keys()
    for user, (calls, failed, minutes) in want["dr_users"].items():
        assert got_users[user][:2] == (calls, failed)
        assert got_users[user][2] == pytest.approx(minutes, abs=0.011)
    got_sip = {r["sip_code"]: r["calls"] for r in report["direct_routing"]["failures_by_sip_code"]}
    assert got_sip == want["sip"] and sum(got_sip.values()) > 10
    assert report["direct_routing"]["failed"] == sum(want["sip"].values())

    # The tables are real Hive-partitioned Parquet, one partition per UTC day with rows.
    tables = ContainerClient.from_connection_string(conn, analytics)
    names = [b.name for b in tables.list_blobs(name_starts_with="pstn_calls/")]
    assert len(names) >= 30
    assert all(n.startswith("pstn_calls/date=") and n.endswith("/part-0.parquet") for n in names)
    table = pq.read_table(io.BytesIO(tables.download_blob(min(names)).readall()))
    assert table.schema.field("startDateTime").type.tz == "UTC" and table.num_rows > 0

    # A second report rebuilds nothing (the tables are current) and says the same.
    again = run_cli("usage", "report", "--since", "30d", "--json", ANALYTICS_CONTAINER=analytics)
    assert "0 day partition(s) rebuilt" in again.stderr
    assert json.loads(again.stdout)["pstn"]["calls"] == report["pstn"]["calls"]
    text = run_cli("usage", "report", "--since", "30d", ANALYTICS_CONTAINER=analytics)
    assert text.returncode == 0 and "Failed Direct Routing calls by SIP code" in text.stdout
