"""The notification endpoint: handshake first, then queue every genuine id before saying 202."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.http import error, json_response, text_response
from shared.messages import WorkItem
from shared.notifications import BadRequest, check_validation_token, parse_body, sort_batch
from shared.runtime import get_runtime
from shared.settings import SettingError
from shared.workqueue import QueueUnavailable

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
        log.warning("notification request refused: %s", exc)
        return error(exc.status, str(exc))


async def handle_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Graph change notifications for callRecords -> one queue message per genuine record id."""
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
    batch = sort_batch(value, rt.settings.client_state)
    for reason in batch.dropped:
        log.warning("dropped notification: %s", reason)
    try:
        await rt.work.put(WorkItem.new(rid, "notification") for rid in batch.ids)
    except QueueUnavailable as exc:
        log.error("queue unavailable, answering 503 so Graph delivers again: %s", exc)
        return error(503, "queue unavailable; deliver again later", {"Retry-After": "30"})
    log.info(
        "queued %d record ids (%d dropped, %d duplicates)",
        len(batch.ids),
        len(batch.dropped),
        batch.duplicates,
    )
    return json_response(
        202,
        {"queued": len(batch.ids), "dropped": len(batch.dropped), "duplicates": batch.duplicates},
    )
