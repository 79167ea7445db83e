"""``cli.py usage health`` as an operator runs it: hand-made Direct Routing rows archived as
the hourly sync archives them (one blob per row, Azurite), the direct_routing_calls table
built from the archive, and every figure checked against the ones worked out by hand
(tests/dr_health_fixture.py) in the JSON and in the page as headless Chromium renders it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.storage.blob import ContainerClient

from shared.usage.archive import parse_row
from shared.usage.kinds import UsageKind
from tests import dr_health_fixture as fx
from tests.integration.conftest import unique
from tests.integration.helpers import chromium, dump_dom
from tests.integration.test_cli import run_cli

pytestmark = pytest.mark.e2e


def archive_rows(conn: str, container: str, rows: list[dict[str, Any]]) -> None:
    """Each row under the blob name the sync gives it (directrouting/yyyy/MM/dd/{id}.json)."""
    client = ContainerClient.from_connection_string(conn, container)
    try:
        client.create_container()
        for row in rows:
            raw = orjson.dumps(row)
            client.upload_blob(parse_row(UsageKind.DIRECT_ROUTING, raw).blob_name, raw)
    finally:
        client.close()


@pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (Debian package `chromium`; `make test` installs "
    "it when it can use apt-get)",
)
def test_health_from_the_archive_matches_the_hand_made_figures(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    archive_rows(app_env["AzureWebJobsStorage"], app_env["ARCHIVE_CONTAINER"], fx.rows())
    page = tmp_path / "health.html"
    window = ["--since", fx.SINCE.isoformat(), "--until", fx.UNTIL.isoformat()]
    analytics = unique("t")
    result = run_cli(
        "usage", "health", *window, "--json", "--html", str(page), ANALYTICS_CONTAINER=analytics
    )
    assert result.returncode == 0, result.stderr
    # The range touches two UTC days (2 and 3 November): their partitions were built; the rows
    # archived on 1 and 4 November are outside it (the unit test reads them and leaves them out).
    assert "tables: 2 day partition(s) rebuilt" in result.stderr
    fx.check_report(json.loads(result.stdout))
    fx.check_page(dump_dom(page))
