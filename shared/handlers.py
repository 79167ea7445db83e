"""Every entry point of the app, and the only module in ``shared/`` that knows Azure Functions.

``function_app.py`` binds triggers to the functions below; each one turns the trigger's input
into plain values, calls the domain module that does the job, and turns the answer back into
an HTTP response (or nothing, for queue and timer triggers). The domain modules never import
``azure.functions``: ruff's banned-import rule keeps it that way.

    notifications        -> notifications.sort_batch, workqueue.put
    lifecycle            -> lifecycle.sort_events, workqueue.put
    queue message        -> archiver.archive_item (records) / lifecycle.run_control (actions)
    keep_subscription    -> lifecycle.keep_subscription
    reconcile            -> reconcile.reconcile_recent
    rebuild_tables       -> analytics.rebuild.rebuild_changed_days
    sync_usage_logs      -> usage.sync.sync_usage_logs
    health               -> status.collect
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import azure.functions as func
import orjson

from shared import archiver, lifecycle, reconcile, status
from shared.messages import ControlItem, MessageError, WorkItem, parse_message
from shared.notifications import (
    BadRequest,
    Sorted,
    check_validation_token,
    notification_items,
    parse_body,
)
from shared.runtime import get_runtime
from shared.settings import SettingError
from shared.status import Verdict
from shared.usage import sync as usage_sync
from shared.workqueue import QueueUnavailable

log = logging.getLogger(__name__)

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


def _read_value(req: func.HttpRequest) -> list[object] | func.HttpResponse:
    """The ``value`` array of a JSON body, or the 4xx to answer."""
    # azure-functions leaves the headers' value type unknown.
    given = cast(str | None, req.headers.get("Content-Type"))  # pyright: ignore[reportUnknownMemberType]
    ctype = (given or "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        return error(415, "Content-Type must be application/json")
    try:
        return parse_body(req.get_body())
    except BadRequest as exc:
        log.warning("webhook request refused: %s", exc)
        return error(exc.status, str(exc))


async def _accept(
    req: func.HttpRequest, kind: str, sort: Callable[[list[object], tuple[str, ...]], Sorted]
) -> func.HttpResponse:
    """What both Graph webhooks do: handshake, parse, keep the genuine items, queue them all
    (durably, before answering), then 202; 503 if the queue cannot take them."""
    answer = _handshake(req)
    if answer is not None:
        return answer
    value = _read_value(req)
    if isinstance(value, func.HttpResponse):
        return value
    try:
        rt = await get_runtime()
    except SettingError as exc:
        log.error("not configured: %s", exc)
        return error(503, "the app is not configured; see its log")
    batch = sort(value, rt.settings.client_states)  # current + previous during a rotation
    for reason in batch.dropped:
        log.warning("dropped %s: %s", kind, reason)
    try:
        await rt.work.put(batch.items)
    except QueueUnavailable as exc:
        log.error("queue unavailable, answering 503 so Graph delivers again: %s", exc)
        return error(503, "queue unavailable; deliver again later", {"Retry-After": "30"})
    body = {"queued": len(batch.items), "dropped": len(batch.dropped), **batch.counts}
    log.info("%s batch: %s", kind, body)
    return json_response(202, body)


async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph change notifications for callRecords -> one queue message per genuine record id."""
    return await _accept(req, "notification", notification_items)


async def lifecycle_events(req: func.HttpRequest) -> func.HttpResponse:
    """Graph lifecycle notifications -> queued control actions, then 202."""
    return await _accept(req, "lifecycle notification", lifecycle.lifecycle_items)


# ---- the queue ----


async def queue_message(body: bytes, dequeue_count: int | None) -> None:
    """Archive a record, or carry out a control action. Malformed messages go straight to
    poison with the reason; everything else is the archiver's retry policy."""
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
    await lifecycle.keep_subscription(await get_runtime())


async def reconcile_recent() -> None:
    await reconcile.reconcile_recent(await get_runtime())


async def rebuild_tables() -> None:
    # Imported here: pyarrow adds ~50 MB and ~0.5 s to a process, which only this one needs.
    from shared.analytics.rebuild import rebuild_changed_days

    await rebuild_changed_days(await get_runtime())


async def sync_usage_logs() -> None:
    await usage_sync.sync_usage_logs(await get_runtime())


async def health() -> func.HttpResponse:
    facts = await status.collect(await get_runtime())
    return json_response(200 if facts.verdict == Verdict.HEALTHY else 503, facts.as_dict())
