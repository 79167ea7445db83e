"""Next links in the form the documentation prints (``$metadata#...``), and a 200 that is not
the JSON page asked for."""

from __future__ import annotations

import httpx
import orjson
import pytest

from shared.archiver import archive_record
from shared.graph import BadPage, Unreachable, resolve_link
from shared.messages import Source, WorkItem


def test_metadata_links_become_resource_paths() -> None:
    link = (
        "https://graph.microsoft.com/v1.0/$metadata#communications/callRecords('e523d2ed-2966"
        "-4b6b-925b-754a88034cc5')/sessions?$expand=segments&$skiptoken=abc"
    )
    assert resolve_link(link) == (
        "https://graph.microsoft.com/v1.0/communications/callRecords('e523d2ed-2966"
        "-4b6b-925b-754a88034cc5')/sessions?$expand=segments&$skiptoken=abc"
    )
    plain = "https://graph.microsoft.com/v1.0/communications/callRecords/x/sessions?$skiptoken=a"
    assert resolve_link(plain) == plain


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


async def test_a_non_json_200_is_a_hard_error_not_a_network_fault(runtime) -> None:
    url = runtime.graph.url("$metadata")
    retries = sum(runtime.graph.retries.values())
    with pytest.raises(BadPage, match="not JSON") as caught:
        await runtime.graph.get(url)
    assert not isinstance(caught.value, Unreachable)
    assert sum(runtime.graph.retries.values()) == retries  # not retried in place
