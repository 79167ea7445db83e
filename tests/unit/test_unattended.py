"""The policies that keep the archive safe with nobody watching, without services: which
failures are outlived, how long the backoff grows, the clamped attempt counter, reconciliation
slices, the one-line drop summary, and the settings behind them."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from shared.activity import LINE, line
from shared.graph import GraphError, NotFound, Throttled, Unauthorized, Unreachable
from shared.graph.retry import GRAPH_IN_PLACE, Fault, RetryLater, classify_fault, not_yet, transient
from shared.handlers import drop_summary
from shared.messages import (
    MAX_ATTEMPT,
    ControlAction,
    ControlItem,
    MessageError,
    WorkItem,
    parse_message,
)
from shared.reconcile import hour_slices
from shared.settings import SettingError, Settings, load_settings
from shared.workqueue import QueueUnavailable

RID = "e523d2ed-2966-4b6b-925b-754a88034cc5"
BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_CLIENT_STATE": "unattended-test-client-state-0123456789",
}


def _http_error(status: int, cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    error = cls(message=f"storage said {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (NotFound(404, "NotFound", "not yet"), Fault.NOT_YET),
        (Throttled(429, "TooManyRequests", "slow down", 40), Fault.TRANSIENT),
        (Throttled(503, "serviceNotAvailable", "busy"), Fault.TRANSIENT),
        (GraphError(500, "generalException", "boom"), Fault.TRANSIENT),
        (GraphError(502, "badGateway", "boom"), Fault.TRANSIENT),
        (GraphError(504, "gatewayTimeout", "boom"), Fault.TRANSIENT),
        (GraphError(408, "timeout", "slow"), Fault.TRANSIENT),
        (Unreachable(0, "ConnectError", "refused"), Fault.TRANSIENT),
        (Unreachable(200, "BadJson", "truncated"), Fault.TRANSIENT),
        (ClientAuthenticationError("token endpoint 500"), Fault.TRANSIENT),
        (CredentialUnavailableError("no endpoint"), Fault.TRANSIENT),
        (ServiceRequestError("connection refused"), Fault.TRANSIENT),
        (ServiceResponseError("connection reset"), Fault.TRANSIENT),
        (_http_error(500), Fault.TRANSIENT),
        (_http_error(503), Fault.TRANSIENT),
        (QueueUnavailable("1 of 1 messages not queued"), Fault.TRANSIENT),
        (httpx.ReadTimeout("slow"), Fault.TRANSIENT),
        (TimeoutError(), Fault.TRANSIENT),
        (ConnectionResetError(), Fault.TRANSIENT),
        (GraphError(400, "BadRequest", "no"), Fault.PERMANENT),
        (Unauthorized(401, "InvalidAuthenticationToken", "expired"), Fault.PERMANENT),
        (Unauthorized(403, "Authorization_RequestDenied", "no role"), Fault.PERMANENT),
        (GraphError(0, "ForeignLink", "refusing"), Fault.PERMANENT),
        (_http_error(404, ResourceNotFoundError), Fault.UNKNOWN),
        (_http_error(403), Fault.UNKNOWN),
        (TypeError("a bug"), Fault.UNKNOWN),
        (RetryLater("paused at a checkpoint", 40), Fault.TRANSIENT),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_failures_are_classified(exc: BaseException, fault: Fault) -> None:
    assert classify_fault(exc) is fault


def _settings(base: int, cap: int) -> Settings:
    return load_settings(
        {**BASE, "ARCHIVE_RETRY_BASE_SECONDS": str(base), "ARCHIVE_RETRY_MAX_SECONDS": str(cap)}
    )


def backoff(item: WorkItem, base: int, cap: int, at_least: float | None = None) -> int:
    return int(transient(_settings(base, cap)).delay(item.attempt, at_least))


def retry_delay(item: WorkItem, base: int, cap: int) -> int:
    return int(not_yet(_settings(base, cap)).delay(item.attempt))


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    early = WorkItem(RID, attempt=0)
    late = WorkItem(RID, attempt=MAX_ATTEMPT)
    delays = [backoff(early, base=60, cap=1800) for _ in range(200)]
    assert all(1 <= d <= 60 for d in delays)
    assert len(set(delays)) > 10  # full jitter: spread, not one value
    late_delays = [backoff(late, base=60, cap=1800) for _ in range(200)]
    assert all(1 <= d <= 1800 for d in late_delays) and max(late_delays) > 900
    assert all(backoff(early, base=1, cap=5, at_least=40) >= 40 for _ in range(20))
    # Never longer than a queue message can stay invisible (7 days).
    assert backoff(late, base=60, cap=10**9) <= 7 * 24 * 3600
    # "Not yet published" keeps its deterministic doubling, under the same cap.
    assert [retry_delay(WorkItem(RID, attempt=a), 60, 1800) for a in (0, 1, 5, 50)] == [
        60,
        120,
        1800,
        1800,
    ]


@pytest.mark.parametrize("attempt", [10_000, 10**12, -5, "7", 3.9, None, True, [1]])
def test_attempt_counter_is_clamped_never_malformed(attempt: object) -> None:
    body = orjson.dumps({"id": RID, "attempt": attempt, "firstSeen": "2026-11-01T00:00:00Z"})
    item = WorkItem.from_body(body)
    assert 0 <= item.attempt <= MAX_ATTEMPT
    assert item.retried("x").attempt <= MAX_ATTEMPT
    if attempt == 10**12:
        assert item.attempt == MAX_ATTEMPT


def test_reconcile_slice_round_trips_and_bad_ones_are_refused() -> None:
    since = datetime(2026, 11, 30, 5, tzinfo=UTC)
    item = ControlItem.reconcile_slice(since, since + timedelta(hours=1))
    back = parse_message(item.to_json())
    assert back == item and isinstance(back, ControlItem)
    assert back.action is ControlAction.RECONCILE_SLICE
    link = "https://graph.microsoft.com/v1.0/communications/callRecords?$skiptoken=abc"
    resumed = ControlItem.reconcile_slice(since, since + timedelta(hours=1), link)
    assert parse_message(resumed.to_json()) == resumed and resumed != item
    hour = {"since": "2026-11-30T05:00Z", "until": "2026-11-30T06:00Z"}
    for bad in (
        {"control": "reconcileSlice"},
        {"control": "reconcileSlice", **hour, "resumeFrom": 42},
        {"control": "reconcileSlice", **hour, "resumeFrom": ""},
        {"control": "reconcileSlice", **hour, "resumeFrom": "x" * 8193},
        {"control": "reconcile", "hours": 4, "resumeFrom": link},
        {"control": "reconcileSlice", "since": "2026-11-30T06:00:00Z", "until": "2026-11-30"},
        {"control": "reconcileSlice", "since": "2026-11-30T06:00Z", "until": "2026-11-30T05:00Z"},
        {"control": "reconcileSlice", "since": "2026-11-01T00:00Z", "until": "2026-11-30T00:00Z"},
        {"control": "reconcileSlice", "since": "yesterday", "until": "2026-11-30T05:00Z"},
    ):
        with pytest.raises(MessageError):
            parse_message(orjson.dumps(bad))


def test_hour_slices_are_whole_hours_newest_first() -> None:
    since = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    until = datetime(2026, 11, 30, 4, 37, tzinfo=UTC)
    slices = hour_slices(since, until)
    assert [(s.hour, s.minute, e.hour, e.minute) for s, e in slices] == [
        (4, 0, 4, 37),
        (3, 0, 4, 0),
        (2, 0, 3, 0),
        (1, 0, 2, 0),
    ]
    assert hour_slices(until, until) == []
    # An unaligned start is its own partial slice; together they cover the window exactly.
    odd = hour_slices(datetime(2026, 11, 30, 1, 20, tzinfo=UTC), until)
    assert odd[-1][0].minute == 20 and odd[0][1] == until
    assert all(a[0] == b[1] for a, b in itertools.pairwise(odd))


def test_a_thousand_junk_items_make_one_short_summary(caplog) -> None:
    reasons = [f"item {i}: not an object" for i in range(990)] + [
        f"item {1000 + i}: changeType {'x' * i!r}" for i in range(10)
    ]
    summary = drop_summary(reasons)
    assert summary == "1000 (not an object: 990, changeType: 10)"
    many = [f"item {i}: reason number {i}" for i in range(1000)]
    assert len(drop_summary(many)) < 400  # distinct reasons are capped, the rest is "other"
    assert drop_summary([]) == "0"
    logging.getLogger("azure.core.pipeline").info("one line per HTTP call")
    assert not caplog.records  # the function app quiets the SDK's per-request INFO lines


def test_activity_lines_have_a_fixed_width() -> None:
    name = f"2026/11/30/{RID}/v{2**62}.json"
    assert len(line(name)) == LINE == len(line("x")) and line(name).strip().decode() == name


def test_unattended_settings() -> None:
    s = load_settings(BASE)
    assert (s.give_up_hours, s.retry_max_seconds, s.max_large_fetches) == (24.0, 1800, 4)
    assert (s.poison_alert_hours, s.reconcile_recent_hours) == (0.0, 4)
    assert s.activity_container == "callrecords-activity"
    s = load_settings({**BASE, "ARCHIVE_GIVE_UP_HOURS": "0.05", "POISON_ALERT_HOURS": "12"})
    assert (s.give_up_hours, s.poison_alert_hours) == (0.05, 12.0)
    long_queue = load_settings({**BASE, "CALLRECORDS_QUEUE": "q" * 63})
    assert len(long_queue.activity_container) <= 63
    for name, value in (
        ("ARCHIVE_GIVE_UP_HOURS", "0"),
        ("ARCHIVE_GIVE_UP_HOURS", "soon"),
        ("POISON_ALERT_HOURS", "-1"),
        ("ARCHIVE_MAX_LARGE_FETCHES", "0"),
        ("ARCHIVE_RETRY_MAX_SECONDS", "x"),
    ):
        with pytest.raises(SettingError, match=name):
            load_settings({**BASE, name: value})


def test_in_place_graph_retries_stop_at_a_long_wait_or_a_landed_post() -> None:
    throttled = Throttled(429, "TooManyRequests", "slow down", 3)
    assert GRAPH_IN_PLACE.next_wait(throttled, 0) == 3  # Graph's Retry-After, exactly
    assert GRAPH_IN_PLACE.next_wait(Throttled(429, "x", "y", 6), 0) is None  # too long here
    assert GRAPH_IN_PLACE.next_wait(throttled, 3) is None  # the fourth try was the last
    dropped = Unreachable(0, "ReadError", "reset")
    assert GRAPH_IN_PLACE.next_wait(dropped, 0, idempotent=False) is None  # may have landed
    wait = GRAPH_IN_PLACE.next_wait(dropped, 1)
    assert wait is not None and 0.5 <= wait <= 1.5  # 0.5 s doubled once, +/-50%
    assert GRAPH_IN_PLACE.next_wait(NotFound(404, "NotFound", "no"), 0) is None


def test_every_named_policy_keeps_its_documented_shape() -> None:
    from shared.graph.retry import (
        LIST_THROTTLED,
        RECORD_PACE,
        RESUME_PAUSED,
        STORAGE_QUEUE,
        slice_again,
    )
    from shared.storage import storage_retry

    # List callRecords: Graph's Retry-After, else 10 s, never more than 2 minutes, no limit
    # on how many times.
    assert LIST_THROTTLED.next_wait(Throttled(429, "x", "y", 300), 50) == 120
    assert LIST_THROTTLED.next_wait(Throttled(429, "x", "y"), 0) == 10
    assert LIST_THROTTLED.next_wait(GraphError(500, "x", "y"), 0) is None  # not a throttle
    # The per-record limit: up to 30 s waited where it is, longer pauses the fetch.
    assert RECORD_PACE.waits_in_place(30) and not RECORD_PACE.waits_in_place(31)
    # A slice that met an outage: again after ARCHIVE_RETRY_MAX_SECONDS, every time.
    again = slice_again(_settings(60, 900))
    assert [again.delay(n) for n in (0, 5, 50)] == [900, 900, 900]
    # The queue clients' SDK retry: two retries 0.2 s (+/- 0.1 s) apart.
    linear = storage_retry(STORAGE_QUEUE)
    assert (linear.backoff, linear.random_jitter_range, linear.total_retries) == (0.2, 0.1, 2)
    # A paused fetch asks to be run again: the CLI waits exactly what it asked.
    assert RESUME_PAUSED.next_wait(RetryLater("paused", 42.0), 7) == 42.0


def _tries_within(policy_delay: Callable[[int], float], hours: float) -> tuple[int, float]:
    """How many fetches a record makes while a fault lasts ``hours``, and the longest wait."""
    elapsed, tries, longest = 0.0, 0, 0.0
    while elapsed < hours * 3600:
        wait = policy_delay(tries)
        elapsed, tries, longest = elapsed + wait, tries + 1, max(longest, wait)
    return tries, longest


def test_a_48_hour_refusal_costs_each_record_few_requests_and_a_grant_is_seen_within_9_hours() -> (
    None
):
    """A 403 lasts hours (a new role takes up to 24 h to reach the tokens, the grace is 48 h):
    every refused record polling Graph on the transient policy would, at 100,000 calls a day,
    make tens of millions of refused requests."""
    import random

    from shared.graph.retry import refused

    settings = _settings(60, 1800)
    rng = random.Random(7)
    tries, longest = _tries_within(lambda n: refused(settings).delay(n, rng=rng), 48)
    assert tries <= 20 and longest <= 9 * 3600
    transient_tries, _ = _tries_within(lambda n: transient(settings).delay(n, rng=rng), 48)
    assert transient_tries > 5 * tries  # what the refusal policy saves, per record


def test_a_steady_refusal_stays_one_episode_between_a_records_tries() -> None:
    """A refused record's longest wait (retry.refused, +50% jitter) is shorter than the gap
    after which a refusal counts as over: else a quiet tenant would start the grace again."""
    from shared.graph.retry import refused
    from shared.permission import EPISODE_GAP

    policy = refused(_settings(60, 1800))
    assert 1.5 * policy.cap < EPISODE_GAP.total_seconds()
