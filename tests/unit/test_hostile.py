"""Hostile input, in process: what each body costs the decoder (memory, the work it causes),
lifecycle floods, and queue messages that lie. CPU time is measured by `make bench`, never
asserted here."""

from __future__ import annotations

import json
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.hostile import Body, bodies
from shared.clock import utcnow
from shared.lifecycle import sort_events
from shared.messages import ControlAction, WorkItem, for_terminal
from shared.notifications import BadRequest, notification_items, parse_body
from shared.subscriptions import previous_id

SECRET = "hostile-test-client-state-0123456789abcdef"
MEMORY_BOUND = 10 * 1024 * 1024  # the goal for the worst 1 MiB body
OURS = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
PREVIOUS = "0b3c1a30-0b7e-4c41-8b57-4a8c1e2e9d11"


def _decode(body: bytes) -> tuple[int, list[str], int]:
    """(status, queued ids, peak bytes allocated) of one body through parse and sort."""
    tracemalloc.start()
    try:
        try:
            batch = notification_items(parse_body(body), SECRET)
            status, ids = 202, [i.id for i in batch.items if isinstance(i, WorkItem)]
        except BadRequest as exc:
            status, ids = exc.status, []
        return status, ids, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", bodies(SECRET), ids=lambda b: b.name)
def test_each_hostile_body_costs_little_and_the_genuine_record_still_queues(case: Body) -> None:
    status, ids, peak = _decode(case.body)
    assert status == case.status
    assert ids == ([case.genuine] if case.genuine else [])  # nothing else is ever queued
    assert peak < MEMORY_BOUND, f"{case.name}: {peak / 2**20:.1f} MiB"


def _lifecycle(sub: str | None, event: str = "missed", state: str = SECRET) -> dict[str, object]:
    item: dict[str, object] = {"lifecycleEvent": event, "clientState": state}
    if sub is not None:
        item["subscriptionId"] = sub
    return item


def test_a_flood_of_foreign_subscription_ids_asks_for_nothing() -> None:
    flood = [_lifecycle(str(uuid.uuid4()), e) for e in ["missed", "subscriptionRemoved"] * 500]
    actions, dropped, foreign = sort_events(flood, SECRET, frozenset({OURS, PREVIOUS}))
    assert actions == [] and foreign == 1000 and len(dropped) == 1000


def test_a_genuine_batch_asks_for_each_action_once_beside_foreign_ones() -> None:
    batch = [
        *[_lifecycle(OURS, "missed") for _ in range(50)],
        *[_lifecycle(str(uuid.uuid4()), "missed") for _ in range(50)],
        _lifecycle(PREVIOUS.upper(), "subscriptionRemoved"),  # the one just replaced
        _lifecycle(OURS, "reauthorizationRequired"),
        _lifecycle(OURS, "missed", state="forged"),
    ]
    actions, dropped, foreign = sort_events(batch, SECRET, frozenset({OURS, PREVIOUS}))
    assert sorted(a.action for a in actions) == sorted(
        [ControlAction.RECONCILE, ControlAction.RECREATE, ControlAction.REAUTHORIZE]
    )
    assert foreign == 50 and len(dropped) == 51


def test_with_no_subscription_remembered_every_event_with_an_id_is_foreign() -> None:
    actions, _, foreign = sort_events([_lifecycle(OURS)], SECRET, frozenset())
    assert actions == [] and foreign == 1


def test_first_seen_in_the_future_is_taken_as_now() -> None:
    rid = str(uuid.uuid4())
    before = utcnow()
    for when in ["9999-12-31T23:59:59+00:00", (utcnow() + timedelta(days=3)).isoformat()]:
        body = json.dumps({"id": rid, "firstSeen": when, "attempt": 3})
        item = WorkItem.from_body(body)
        assert item.first_seen is not None and before <= item.first_seen <= utcnow()
    past = datetime(2026, 1, 1, tzinfo=UTC)
    assert WorkItem.from_body(
        json.dumps({"id": rid, "firstSeen": past.isoformat()})
    ).first_seen == (past)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b]0;owned\x07gone", "\\x1b[2J\\x1b]0;owned\\x07gone"),
        ("line\r\nfake: ok", "line\\r\\nfake: ok"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\x9b31m", "\\x9b31m"),
        ("plain text, ünïcödé ✓", "plain text, ünïcödé ✓"),
    ],
)
def test_message_text_is_printed_with_control_characters_escaped(text: str, shown: str) -> None:
    assert for_terminal(text) == shown


def test_hostile_reason_and_last_error_survive_the_round_trip_but_print_escaped() -> None:
    rid = str(uuid.uuid4())
    body = json.dumps({"id": rid, "reason": "\x1b[31mred\x1b[0m", "lastError": "a\rb"})
    item = WorkItem.from_body(body)
    assert for_terminal(item.reason) == "\\x1b[31mred\\x1b[0m"
    assert for_terminal(item.last_error) == "a\\rb"


def test_warnings_and_errors_are_never_sampled_away() -> None:
    """Application Insights samples only the types not listed in excludedTypes
    (learn.microsoft.com/azure/azure-functions/functions-host-json#applicationinsightssamplingsettings);
    log lines of every level are the Trace type, so Trace is listed."""
    host = json.loads((Path(__file__).parents[2] / "host.json").read_text())
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    excluded = {t.strip() for t in sampling["excludedTypes"].split(";")}
    assert {"Trace", "Exception", "Request"} <= excluded


def test_the_replaced_subscription_is_remembered_as_the_previous_one() -> None:
    assert previous_id(None, OURS) is None
    assert previous_id({"subscriptionId": PREVIOUS}, OURS) == PREVIOUS  # just replaced
    kept = {"subscriptionId": OURS, "previousSubscriptionId": PREVIOUS}
    assert previous_id(kept, OURS) == PREVIOUS  # renewed: still the one before


def test_text_from_a_body_never_reaches_the_log_raw() -> None:
    forged = [_lifecycle(OURS, "x\n2026-01-01 ERROR forged line"), {"changeType": "\x1b[2J"}]
    _, dropped, _ = sort_events(forged[:1], SECRET, frozenset({OURS}))
    sorted_out = notification_items(
        [{**forged[1], "clientState": SECRET, "resource": "x"}], SECRET
    ).dropped
    assert all("\n" not in d and "\x1b" not in d for d in [*dropped, *sorted_out])
