"""The notification endpoint: handshake first, then queue every genuine id before saying 202."""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func

from shared.http import error, json_response, text_response
from shared.messages import WorkItem
from shared.notifications import BadRequest, check_validation_token, parse_body, sort_batch
from shared.runtime import get_runtime
from shared.settings import SettingError
from shared.workqueue import Message, QueueUnavailable

log = logging.getLogger("notifications")


def handshake(req: func.HttpRequest) -> func.HttpResponse | None:
    """Answer Graph's validation request (before any body is read), or None if it is not one."""
    token = req.params.get("validationToken")
    if token is None:
        return None
    try:
        return text_response(200, check_validation_token(token))
    except BadRequest as exc:
        log.warning("validation request refused: %s", exc)
        return error(exc.status, str(exc))


def read_value(req: func.HttpRequest) -> list[object] | func.HttpResponse:
    """The ``value`` array of a JSON body, or the 4xx to answer."""
    ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        return error(415, "Content-Type must be application/json")
    try:
        return parse_body(req.get_body())
    except BadRequest as exc:
        log.warning("webhook request refused: %s", exc)
        return error(exc.status, str(exc))


Sorter = Callable[[list[object], str], tuple[list[Message], list[str], dict[str, int]]]


async def accept(req: func.HttpRequest, kind: str, sort: Sorter) -> func.HttpResponse:
    """What both Graph webhooks do: handshake, parse, keep the genuine items, queue them all
    (durably, before answering), then 202; 503 if the queue cannot take them."""
    answer = handshake(req)
    if answer is not None:
        return answer
    value = read_value(req)
    if isinstance(value, func.HttpResponse):
        return value
    try:
        rt = await get_runtime()
    except SettingError as exc:
        log.error("not configured: %s", exc)
        return error(503, "the app is not configured; see its log")
    items, dropped, counts = sort(value, rt.settings.client_state)
    for reason in dropped:
        log.warning("dropped %s: %s", kind, reason)
    try:
        await rt.work.put(items)
    except QueueUnavailable as exc:
        log.error("queue unavailable, answering 503 so Graph delivers again: %s", exc)
        return error(503, "queue unavailable; deliver again later", {"Retry-After": "30"})
    body = {"queued": len(items), "dropped": len(dropped), **counts}
    log.info("%s batch: %s", kind, body)
    return json_response(202, body)


def _notification_items(
    value: list[object], client_state: str
) -> tuple[list[Message], list[str], dict[str, int]]:
    batch = sort_batch(value, client_state)
    items: list[Message] = [WorkItem.new(rid, "notification") for rid in batch.ids]
    return items, batch.dropped, {"duplicates": batch.duplicates}


async def handle_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph change notifications for callRecords -> one queue message per genuine record id."""
    return await accept(req, "notification", _notification_items)
