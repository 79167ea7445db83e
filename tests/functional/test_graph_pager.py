"""The one pager and the client's in-place retry policy, over the in-memory Graph: every page,
a continuation token, the host pinned, Retry-After honoured, read-ahead, a 200 that is not
JSON (a hard error, never retried), next links in the documentation's ``$metadata#`` form."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import httpx
import pytest

from shared.graph import BadPage, GraphError, Throttled, Unreachable, pages, resolve_link
from shared.graph.retry import RetryPolicy
from tests.fakes.graph import BASE, FakeGraph

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def read_all(graph: FakeGraph, url: str, **kwargs) -> list[list[str]]:
    client = graph.client()
    try:
        return [
            [item["id"] for item in page.objects()] async for page in pages(client, url, **kwargs)
        ]
    finally:
        await client._http.aclose()


async def test_every_page_in_order_and_resumed_from_a_token(graph: FakeGraph) -> None:
    record = graph.add_record(START, sessions=5)
    url = f"{BASE}/v1.0/communications/callRecords/{record.id}/sessions"
    assert await read_all(graph, url) == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    client = graph.client()
    async with contextlib.aclosing(pages(client, url)) as it:
        first = await anext(it)
    token = first.next_link
    assert token is not None and "$metadata#" in token  # the documented context-URL form
    rest = [[i["id"] for i in p.objects()] async for p in pages(client, token=token)]
    assert rest == [["s2", "s3"], ["s4"]]
    await client._http.aclose()


async def test_read_ahead_asks_for_the_next_page_before_this_one_is_used(graph: FakeGraph) -> None:
    record = graph.add_record(START, participants=6)
    url = f"{BASE}/v1.0/communications/callRecords/{record.id}/participants_v2"
    client = graph.client()
    seen_at_first_page = 0
    async for page in pages(client, url, read_ahead=True):
        if page.objects()[0]["id"] == "p0":
            await asyncio.sleep(0)  # let the read-ahead run
            seen_at_first_page = len(graph.requests)
    assert seen_at_first_page == 2  # the first page, and the second already on its way
    await client._http.aclose()


async def test_a_next_link_to_another_host_is_refused_before_a_token_goes_out(
    graph: FakeGraph,
) -> None:
    client = graph.client()
    with pytest.raises(GraphError) as caught:
        async for _ in pages(client, token="https://evil.example/v1.0/steal?$skiptoken=1"):
            pass
    assert caught.value.code == "ForeignLink" and graph.requests == []
    await client._http.aclose()


async def test_short_throttles_are_waited_in_place_long_ones_go_up(graph: FakeGraph) -> None:
    record = graph.add_record(START, sessions=3)
    url = f"{BASE}/v1.0/communications/callRecords/{record.id}/sessions"
    graph.script = [(429, 0.01), (503, 0.01)]
    assert await read_all(graph, url) == [["s0", "s1"], ["s2"]]
    graph.script = [(429, 60.0)]  # longer than GRAPH_IN_PLACE waits where it is
    with pytest.raises(Throttled) as caught:
        await read_all(graph, url)
    assert caught.value.retry_after == 60.0
    # A policy that waits long throttles out (a CLI backfill) gets the whole collection.
    graph.script = [(429, 0.02)]
    quick = RetryPolicy("test", tries=None, exceptions=(Throttled,))
    client = graph.client(retry=RetryPolicy("none"))
    got = [p async for p in pages(client, url, retry=quick)]
    assert len(got) == 2
    await client._http.aclose()


async def test_a_200_that_is_not_json_is_a_bad_page(graph: FakeGraph) -> None:
    client = graph.client()
    await client._http.aclose()
    asked: list[str] = []

    def xml(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, text="<edmx/>", headers={"Content-Type": "application/xml"})

    client._http = httpx.AsyncClient(transport=httpx.MockTransport(xml))
    with pytest.raises(BadPage, match="not JSON") as caught:
        async for _ in pages(client, f"{BASE}/v1.0/$metadata"):
            pass
    assert not isinstance(caught.value, Unreachable)  # a hard error, not a network fault
    assert len(asked) == 1 and not client.retries  # so not retried in place
    with pytest.raises(BadPage, match="not JSON"):
        await client.get(f"{BASE}/v1.0/$metadata")
    await client._http.aclose()


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
