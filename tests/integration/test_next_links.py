"""Next links in the form the documentation prints (``$metadata#...``) against the simulator:
it serves both forms (and XML at ``$metadata`` itself), and a record paged by either is
archived complete; a reconcile slice out of time goes on from the simulator's List next link,
carried in a queue message."""

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


async def test_a_slice_out_of_time_resumes_from_the_simulators_list_link(
    runtime, fresh_sim
) -> None:
    """A reconcile slice with no time left lists one page and queues the rest with Graph's
    own next link (the simulator's is a signed, opaque skip token): through the real queue,
    130 records in an hour take three invocations, three List requests, each record queued
    once."""
    from datetime import timedelta

    from shared.clock import utcnow
    from shared.messages import ControlItem, WorkItem, parse_message
    from shared.reconcile import reconcile_slice

    hour = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    created = {
        fresh_sim.client.create_record(
            sessions=1, participants=1, start=hour + timedelta(seconds=25 * i), notify=False
        )["id"]
        for i in range(130)
    }
    before = fresh_sim.client.stats()["requests"].get("list", 0)
    work: list[ControlItem] = [ControlItem.reconcile_slice(hour, hour + timedelta(hours=1))]
    queued: list[str] = []
    invocations = 0
    while work:
        report = await reconcile_slice(runtime, work.pop(), budget=timedelta(0))
        invocations += 1
        assert report is not None and report.pages == 1
        while batch := [m async for m in runtime.work.queue.receive_messages(max_messages=32)]:
            for message in batch:
                item = parse_message(message.content)
                await runtime.work.queue.delete_message(message)
                if isinstance(item, ControlItem):
                    assert item.resume_from and "$skiptoken=" in item.resume_from
                    work.append(item)
                else:
                    assert isinstance(item, WorkItem)
                    queued.append(item.id)
    assert invocations == 3 and fresh_sim.client.stats()["requests"].get("list", 0) - before == 3
    assert sorted(queued) == sorted(created)
