"""Every entry point of the app, and the only module in ``shared/`` that knows Azure Functions.

``function_app.py`` binds triggers to the functions below; each one turns the trigger's input
into plain values, calls the domain module that does the job, and turns the answer back into
an HTTP response (or nothing, for queue and timer triggers). The domain modules never import
``azure.functions``: ruff's banned-import rule keeps it that way.

    notifications        -> notifications.parse_body, notification_items, WorkQueue.put
    lifecycle            -> notifications.parse_body, lifecycle.lifecycle_batch, WorkQueue.put
    queue_message        -> archiver.archive_item (records) / lifecycle.run_control (actions)
    keep_subscription    -> lifecycle.keep_subscription
    hourly_reconcile     -> reconcile.scheduled_pass + sweep.queue_next_piece (queued slices),
                            poison.keep_forever
    health               -> status.collect

The analytics and usage features bind their own timers (shared/analytics/triggers.py,
shared/usage/triggers.py: Functions Blueprints that function_app.py registers).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import azure.functions as func
import orjson
from azure.core.exceptions import AzureError

from shared.notifications import (
    MAX_BODY_BYTES,
    BadRequest,
    Sorted,
    check_validation_token,
    notification_items,
    parse_body,
)
from shared.settings import SettingError
from shared.webhookqueue import webhook_queue
from shared.workqueue import QueueUnavailable, WorkQueue

if TYPE_CHECKING:
    from shared.runtime import Runtime


async def get_runtime() -> Runtime:
    """The process's full runtime (Graph client, blob SDK, ...), imported on first use so that
    a cold instance answers the notifications webhook without loading it."""
    from shared.runtime import get_runtime as build

    return await build()


# A webhook's services, built once ready to use: the queue to put on, and how a batch is sorted.
Sorter = Callable[[Sequence[object]], Awaitable[Sorted]]
Prepare = Callable[[], Awaitable[tuple[WorkQueue, Sorter]]]

log = logging.getLogger(__name__)

# One line per webhook request is the app's log; the Azure SDK and httpx would add one INFO line
# per HTTP call they make (every queue put, blob write and Graph page), as cli.py also quiets.
for _noisy in ("azure", "httpx"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

# Graph wants an answer within 3 s (then retries for 4 hours): queue for at most this long,
# then answer 503. A black-holed storage endpoint (connections that open and never answer)
# would otherwise hold the request through the SDK's timeouts and retries.
ENQUEUE_DEADLINE = 2.5  # seconds
MAX_DROP_REASONS = 8  # distinct reasons named in the request's log line; the rest are "other"

SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


# ---- HTTP answers: JSON bodies, and never a stack trace ----


def json_response(
    status_code: int, body: Any, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps(body),
        status_code=status_code,
        mimetype="application/json",
        headers={**SAFE_HEADERS, **(headers or {})},
    )


def error(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return json_response(status_code, {"error": message}, headers)


def text_response(status_code: int, text: str) -> func.HttpResponse:
    """Plain text, explicitly not HTML: the validation token is echoed through this."""
    return func.HttpResponse(
        text, status_code=status_code, mimetype="text/plain", charset="utf-8", headers=SAFE_HEADERS
    )


# ---- the two Graph webhooks ----


def _handshake(req: func.HttpRequest) -> func.HttpResponse | None:
    """Answer Graph's validation request (before any body is read), or None if it is not one."""
    token = req.params.get("validationToken")
    if token is None:
        return None
    try:
        return text_response(200, check_validation_token(token))
    except BadRequest as exc:
        log.warning("validation request refused: %s", exc)
        return error(exc.status, str(exc))


def _header(req: func.HttpRequest, name: str) -> str:
    # azure-functions leaves the headers' value type unknown.
    return cast(str | None, req.headers.get(name)) or ""  # pyright: ignore[reportUnknownMemberType]


def _read_value(req: func.HttpRequest) -> Sequence[object] | func.HttpResponse:
    """The ``value`` array of a JSON body, or the 4xx to answer."""
    ctype = _header(req, "Content-Type").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        return error(415, "Content-Type must be application/json")
    # The declared length first: a body announced too large is refused before it is looked at
    # (the Functions host refuses it earlier still, FUNCTIONS_REQUEST_BODY_SIZE_LIMIT).
    length = _header(req, "Content-Length").strip()
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        log.warning("webhook request refused: Content-Length %s over %d", length, MAX_BODY_BYTES)
        return error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        return parse_body(req.get_body())
    except BadRequest as exc:
        log.warning("webhook request refused: %s", exc)
        return error(exc.status, str(exc))


async def _accept(req: func.HttpRequest, kind: str, prepare: Prepare) -> func.HttpResponse:
    """What both Graph webhooks do: handshake, parse, keep the genuine items, queue them all
    (durably, before answering), then 202; 503 if the queue cannot take them."""
    answer = _handshake(req)
    if answer is not None:
        return answer
    value = _read_value(req)
    if isinstance(value, func.HttpResponse):
        return value
    try:
        work, sort = await prepare()
    except SettingError as exc:
        log.error("not configured: %s", exc)
        return error(503, "the app is not configured; see its log")
    batch = Sorted([], [])
    try:
        async with asyncio.timeout(ENQUEUE_DEADLINE):
            batch = await sort(value)
            await work.put(batch.items)
    except (QueueUnavailable, AzureError, TimeoutError) as exc:
        # Whatever did get queued is fetched once more after Graph's redelivery: harmless,
        # each version is written once.
        cause = str(exc).splitlines()[0] if str(exc) else f"no answer within {ENQUEUE_DEADLINE} s"
        dropped = drop_summary(batch.dropped)
        log.error(
            "%s batch: %d genuine, dropped %s; queue unavailable (%s), answered 503 so Graph "
            "delivers again",
            kind,
            len(batch.items),
            dropped,
            cause,
        )
        return error(503, "queue unavailable; deliver again later", {"Retry-After": "30"})
    dropped = drop_summary(batch.dropped)
    body = {"queued": len(batch.items), "dropped": len(batch.dropped), **batch.counts}
    level = logging.WARNING if batch.dropped else logging.INFO
    extra = "".join(f", {key} {value}" for key, value in batch.counts.items())
    log.log(level, "%s batch: queued %d, dropped %s%s", kind, len(batch.items), dropped, extra)
    return json_response(202, body)


_ITEM_PREFIX = re.compile(r"^item \d+: ")
_VALUE = re.compile(r"\s*['\"(].*$")


def drop_summary(reasons: list[str]) -> str:
    """Dropped items counted by reason, for one log line: ``0`` or ``3 (clientState does not
    match: 2, changeType: 1)``. Values quoted in a reason are left out, so 1,000 junk items
    make a short line, never 1,000 lines."""
    if not reasons:
        return "0"
    counts = Counter(_VALUE.sub("", _ITEM_PREFIX.sub("", r))[:60] or "other" for r in reasons)
    named = counts.most_common(MAX_DROP_REASONS)
    rest = sum(counts.values()) - sum(n for _, n in named)
    parts = [f"{reason}: {n}" for reason, n in named] + ([f"other: {rest}"] if rest else [])
    return f"{len(reasons)} ({', '.join(parts)})"


async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph change notifications for callRecords -> one queue message per genuine record id."""

    async def prepare() -> tuple[WorkQueue, Sorter]:
        # Settings and the queue only: no Graph client, no blob SDK on a cold instance.
        settings, work = await webhook_queue()

        async def sort(value: Sequence[object]) -> Sorted:
            return notification_items(value, settings.client_states)  # current + previous

        return work, sort

    return await _accept(req, "notification", prepare)


async def lifecycle_events(req: func.HttpRequest) -> func.HttpResponse:
    """Graph lifecycle notifications -> queued control actions, then 202."""

    async def prepare() -> tuple[WorkQueue, Sorter]:
        # The full runtime: events are checked against the subscription the keeper saved.
        from shared.lifecycle import lifecycle_batch

        rt = await get_runtime()

        async def sort(value: Sequence[object]) -> Sorted:
            return await lifecycle_batch(rt, value)

        return rt.work, sort

    return await _accept(req, "lifecycle notification", prepare)


# ---- the queue ----


async def queue_message(body: bytes, dequeue_count: int | None) -> None:
    """Archive a record, or carry out a control action. Malformed messages go straight to
    poison with the reason; everything else is the archiver's retry policy."""
    from shared import archiver, lifecycle
    from shared.messages import ControlItem, MessageError, WorkItem, parse_message

    rt = await get_runtime()
    try:
        item = parse_message(body)
    except MessageError as exc:
        log.error("malformed queue message moved to poison: %s", exc)
        await rt.work.put_raw_poison(body, str(exc))
        return
    if isinstance(item, ControlItem):
        await lifecycle.run_control(rt, item)  # raises to be retried by the host
        return
    assert isinstance(item, WorkItem)
    await archiver.archive_item(rt, item, dequeue_count or 0)


# ---- timers and health ----


async def keep_subscription() -> None:
    from shared import lifecycle

    await lifecycle.keep_subscription(await get_runtime())


async def hourly_reconcile() -> None:
    """The hourly timer: queue this hour's reconciliation slices and the next piece of the
    rolling 30-day sweep, and re-send any poison message the host parked with an expiry
    (poison.keep_forever)."""
    from shared import poison, reconcile, sweep

    rt = await get_runtime()
    await reconcile.scheduled_pass(rt)
    await sweep.queue_next_piece(rt.state, rt.work, rt.settings.reconcile_sweep_hours)
    raw = rt.raw_poison()
    try:
        await poison.keep_forever(rt.work, raw)
    finally:
        await raw.close()


async def health() -> func.HttpResponse:
    from shared import status
    from shared.status import Verdict

    facts = await status.collect(await get_runtime())
    return json_response(200 if facts.verdict == Verdict.HEALTHY else 503, facts.as_dict())
