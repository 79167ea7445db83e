"""Next links in the form the documentation prints (``$metadata#...``) against the simulator:
it serves both forms (and XML at ``$metadata`` itself), and a record paged by either is
archived complete."""

from __future__ import annotations

import httpx
import orjson
import pytest

from shared.archiver import archive_record
from shared.graph import resolve_link
from shared.messages import Source, WorkItem


def test_simulator_serves_both_forms_and_metadata_xml(sim) -> None:
    token = httpx.get(
        sim.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
        headers={"X-IDENTITY-HEADER": sim.identity_header},
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    rid = sim.client.create_record(
        sessions=70, participants=2, notify=False, link_style="metadata"
    )["id"]
    base = f"{sim.base_url}/v1.0"
    first = httpx.get(
        f"{base}/communications/callRecords/{rid}?$expand=sessions($expand=segments)",
        headers=auth,
    ).json()
    link = first["sessions@odata.nextLink"]
    assert link.startswith(f"{base}/$metadata#communications/callRecords('{rid}')/sessions?")
    verbatim = httpx.get(link, headers=auth)  # the client drops the fragment
    assert verbatim.status_code == 200
    assert verbatim.headers["content-type"].startswith("application/xml")
    keyed = httpx.get(resolve_link(link), headers=auth)
    assert keyed.status_code == 200 and len(keyed.json()["value"]) == 10


@pytest.mark.parametrize("style", ["metadata", "path"])
async def test_record_with_either_link_form_is_archived_complete(runtime, sim, style) -> None:
    rid = sim.client.create_record(sessions=250, participants=270, notify=False, link_style=style)[
        "id"
    ]
    result = await archive_record(runtime, WorkItem.new(rid, Source.CLI))
    assert result.written and result.pages == 5 + 3
    data = await (await runtime.archive.container.download_blob(result.blob)).readall()
    assert orjson.loads(data) == sim.client.expected(rid)
