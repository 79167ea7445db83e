"""Graph change notifications: the validation handshake and the sorting of a batch into
genuine callRecord ids and dropped items (each with the reason, never the secret)."""

from __future__ import annotations

import hmac
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.ids import is_guid
from shared.jsonvalues import as_list, as_object
from shared.messages import ControlItem, Source, WorkItem

MAX_BODY_BYTES = 4 * 1024 * 1024  # Graph batches are far smaller; this bounds the parse.
# Graph's validationToken is opaque and its format "can change without notice"
# (learn.microsoft.com/graph/change-notifications-delivery-webhooks): any length a URL can
# reasonably carry is echoed; 8 KiB (UTF-8 bytes) only bounds what is echoed.
MAX_VALIDATION_TOKEN = 8 * 1024
MAX_ITEMS = 1000
RESOURCE_PREFIX = "communications/callrecords/"
# The docs' notification examples spell the type "#Microsoft.Graph.callrecord" or
# "#Microsoft.Graph.callRecord"; the entity type is microsoft.graph.callRecords.callRecord
# (learn.microsoft.com/graph/changenotifications-for-callrecords,
# learn.microsoft.com/graph/api/resources/callrecords-callrecord). Any spelling whose last
# segment is callRecord is a call record; the resource and the secret are what prove it genuine.
ODATA_TYPE_NAME = "callrecord"


class BadRequest(ValueError):
    """The request as a whole is not a notification batch: answer 4xx, queue nothing."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Batch:
    """A notification batch sorted out: ids to queue (deduplicated, in order) and drops."""

    ids: list[str] = field(default_factory=list[str])
    dropped: list[str] = field(default_factory=list[str])
    duplicates: int = 0


@dataclass(frozen=True)
class Sorted:
    """What a webhook queues from one request, what it dropped (with reasons), and counts."""

    items: list[WorkItem | ControlItem]
    dropped: list[str]
    counts: dict[str, int] = field(default_factory=dict[str, int])


def check_validation_token(token: str) -> str:
    """The token to echo exactly as it came (already URL-decoded); only an empty one, one over
    8 KiB, or one with control characters (C0, DEL, C1: header or log injection, never part of
    Graph's tokens) is refused before anything is echoed."""
    if not token or len(token.encode("utf-8", "surrogatepass")) > MAX_VALIDATION_TOKEN:
        raise BadRequest(f"validationToken must be 1-{MAX_VALIDATION_TOKEN} bytes")
    if any(unicodedata.category(c) == "Cc" for c in token):
        raise BadRequest("validationToken has control characters")
    return token


def same_secret(given: object, expected: str | tuple[str, ...]) -> bool:
    """Constant-time clientState comparison (bytes, so non-ASCII cannot raise) against the
    secret, or any of several (the current and the previous one during a rotation); every
    candidate is compared, so the time says nothing about which one matched."""
    if not isinstance(given, str):
        return False
    candidates = (expected,) if isinstance(expected, str) else expected
    raw = given.encode("utf-8")
    matches = [hmac.compare_digest(raw, c.encode("utf-8")) for c in candidates]
    return any(matches)


def parse_body(body: bytes) -> list[Any]:
    """The ``value`` array of a notification body, or BadRequest."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes", status=413)
    if not body.strip():
        raise BadRequest("empty body: expected a JSON object with a 'value' array")
    try:
        data = as_object(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON ({str(exc).split(':')[0]})") from exc
    if data is None:
        raise BadRequest("body must be a JSON object with a 'value' array")
    value = as_list(data.get("value"))
    if value is None:
        raise BadRequest("body has no 'value' array")
    if len(value) > MAX_ITEMS:
        raise BadRequest(f"'value' holds more than {MAX_ITEMS} notifications", status=413)
    return value


def is_call_record_type(odata_type: object) -> bool:
    """``#Microsoft.Graph.callrecord``, ``#microsoft.graph.callRecords.callRecord``, ..."""
    return str(odata_type).lstrip("#").rsplit(".", 1)[-1].lower() == ODATA_TYPE_NAME


def _record_id(item: dict[str, Any]) -> tuple[str | None, str]:
    """The callRecord id an item names, or (None, why not)."""
    resource = item.get("resource")
    if not isinstance(resource, str):
        return None, "no resource"
    if not resource.lower().startswith(RESOURCE_PREFIX):
        return None, "not a callRecords resource"
    rid = resource[len(RESOURCE_PREFIX) :]
    if not is_guid(rid):
        return None, "resource id is not a GUID"
    if item.get("resourceData") is not None:
        data = as_object(item["resourceData"])
        if data is None:
            return None, "resourceData is not an object"
        odata_type = data.get("@odata.type")
        if odata_type is not None and not is_call_record_type(odata_type):
            return None, "resourceData is not a callRecord"
        if "id" in data and str(data["id"]).lower() != rid.lower():
            return None, "resourceData.id differs from resource"
    return rid.lower(), ""


def sort_batch(value: list[Any], client_state: str | tuple[str, ...]) -> Batch:
    """Keep genuine callRecord ids; drop (with a reason) everything else, item by item."""
    batch = Batch()
    seen: set[str] = set()
    for index, raw in enumerate(value):
        item = as_object(raw)
        if item is None:
            batch.dropped.append(f"item {index}: not an object")
            continue
        if not same_secret(item.get("clientState"), client_state):
            batch.dropped.append(f"item {index}: clientState does not match")
            continue
        if "lifecycleEvent" in item:
            batch.dropped.append(f"item {index}: lifecycle event sent to the notification URL")
            continue
        change = item.get("changeType")
        if change is not None and change not in ("created", "updated"):
            batch.dropped.append(f"item {index}: changeType {str(change)[:20]!r}")
            continue
        rid, why = _record_id(item)
        if rid is None:
            batch.dropped.append(f"item {index}: {why}")
            continue
        if rid in seen:
            batch.duplicates += 1
            continue
        seen.add(rid)
        batch.ids.append(rid)
    return batch


def notification_items(value: list[Any], client_state: str | tuple[str, ...]) -> Sorted:
    """A change-notification batch as the work items to queue (one per genuine record id)."""
    batch = sort_batch(value, client_state)
    items: list[WorkItem | ControlItem] = [
        WorkItem.new(rid, Source.NOTIFICATION) for rid in batch.ids
    ]
    return Sorted(items, batch.dropped, {"duplicates": batch.duplicates})
