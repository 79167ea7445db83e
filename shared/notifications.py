"""Graph change notifications: the validation handshake and the sorting of a batch into
genuine callRecord ids and dropped items (each with the reason, never the secret)."""

from __future__ import annotations

import codecs
import hmac
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from shared.ids import is_guid
from shared.messages import ControlItem, Source, WorkItem

# A Graph batch of 1,000 notifications is about 600 KiB; this bounds the decode. The Functions
# host refuses larger bodies first (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, the same number).
MAX_BODY_BYTES = 1024 * 1024
# Graph's validationToken is opaque and its format "can change without notice"
# (learn.microsoft.com/graph/change-notifications-delivery-webhooks): any length a URL can
# reasonably carry is echoed; 8 KiB (UTF-8 bytes) only bounds what is echoed.
MAX_VALIDATION_TOKEN = 8 * 1024
MAX_ITEMS = 1000
# What the decoder allocates grows with the number of JSON values it builds, and sibling values
# are separated by commas (nesting without commas stops at the decoder's recursion limit): a
# genuine notification holds about 10 commas, so 32 per item is generous. Counting them (a C
# loop over the bytes) refuses a body of a million tiny values before it costs a million
# Python objects.
MAX_COMMAS = 32 * MAX_ITEMS
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


# ---- decoding: typed structs, unknown keys skipped without being built ----
# Only the keys the app reads are decoded; anything else (any size, any depth up to msgspec's
# recursion limit) is skipped by the decoder without creating a Python object. Field names are
# Graph's: learn.microsoft.com/graph/api/resources/changenotification (change notifications)
# and learn.microsoft.com/graph/change-notifications-lifecycle-events (lifecycle batches).


class ResourceData(msgspec.Struct, frozen=True, gc=False):
    """``resourceData`` of a change notification: the entity's type and id."""

    odata_type: str | None = msgspec.field(name="@odata.type", default=None)
    id: str | None = None


class Notification(msgspec.Struct, frozen=True, gc=False, rename="camel"):
    """One item of a change or lifecycle notification batch: the fields the app checks."""

    client_state: str | None = None
    change_type: str | None = None
    resource: str | None = None
    resource_data: ResourceData | None = None
    lifecycle_event: str | None = None
    subscription_id: str | None = None


class _Batch(msgspec.Struct, frozen=True, gc=False):
    value: Annotated[list[Notification], msgspec.Meta(max_length=MAX_ITEMS)]


class _LooseBatch(msgspec.Struct, frozen=True, gc=False):
    """The same batch with each item left undecoded, for the item-by-item path."""

    value: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_ITEMS)]


_BATCH = msgspec.json.Decoder(_Batch)
_LOOSE = msgspec.json.Decoder(_LooseBatch)
_ITEM = msgspec.json.Decoder(Notification)


def as_notification(raw: object) -> Notification | str:
    """One batch item as a Notification, or why it is not one (an item that is not an object,
    a field of the wrong type). Takes the decoder's output, raw JSON, or a parsed dict."""
    if isinstance(raw, Notification):
        return raw
    try:
        if isinstance(raw, msgspec.Raw):
            return _ITEM.decode(raw)
        return msgspec.convert(raw, Notification)
    except RecursionError:
        return "nested too deeply"
    except msgspec.ValidationError as exc:
        where = str(exc).partition(" - at `$")[2].rstrip("`")
        return f"{where.lstrip('.')} has the wrong type" if where else "not an object"


def parse_body(body: bytes) -> Sequence[Notification | msgspec.Raw]:
    """The ``value`` array of a notification body, or BadRequest. Costs a bounded amount of
    memory and time whatever the body holds (docs/operations.md, "Hostile input")."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body larger than {MAX_BODY_BYTES} bytes", status=413)
    if not body.strip():
        raise BadRequest("empty body: expected a JSON object with a 'value' array")
    if body.count(b",") > MAX_COMMAS:
        raise BadRequest(
            f"body holds more than {MAX_COMMAS} JSON values: not a notification batch of "
            f"at most {MAX_ITEMS} items",
            status=413,
        )
    _check_utf8(body)
    try:
        return _BATCH.decode(body).value
    except RecursionError as exc:
        raise BadRequest("body is nested too deeply") from exc
    except msgspec.DecodeError as exc:
        if not isinstance(exc, msgspec.ValidationError):
            raise BadRequest(f"body is not valid JSON ({str(exc).split(':')[0]})") from exc
    # Some item is not a well-typed notification: decode again, item by item, so that one bad
    # item is dropped (with its reason) and the genuine ones in the same batch still queue.
    try:
        return _LOOSE.decode(body).value
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _shape_error(exc) from exc


def _check_utf8(body: bytes) -> None:
    """JSON is UTF-8 (RFC 8259); the decoder checks only the strings it builds, so the rest
    is checked here, in 64 KiB steps so that no copy of the body is made."""
    if body.isascii():
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 64 * 1024
    try:
        for start in range(0, len(body), step):
            decoder.decode(body[start : start + step], final=start + step >= len(body))
    except UnicodeDecodeError as exc:
        raise BadRequest("body is not UTF-8") from exc


def _shape_error(exc: msgspec.DecodeError | RecursionError) -> BadRequest:
    text = str(exc)
    if isinstance(exc, RecursionError):
        return BadRequest("body is nested too deeply")
    if not isinstance(exc, msgspec.ValidationError):
        return BadRequest(f"body is not valid JSON ({text.split(':')[0]})")
    if "length <= " in text:
        return BadRequest(f"'value' holds more than {MAX_ITEMS} notifications", status=413)
    if "`$.value`" in text or "field `value`" in text:
        return BadRequest("body has no 'value' array")
    return BadRequest("body must be a JSON object with a 'value' array")


def is_call_record_type(odata_type: object) -> bool:
    """``#Microsoft.Graph.callrecord``, ``#microsoft.graph.callRecords.callRecord``, ..."""
    return str(odata_type).lstrip("#").rsplit(".", 1)[-1].lower() == ODATA_TYPE_NAME


def _record_id(item: Notification) -> tuple[str | None, str]:
    """The callRecord id an item names, or (None, why not)."""
    resource = item.resource
    if resource is None:
        return None, "no resource"
    if not resource.lower().startswith(RESOURCE_PREFIX):
        return None, "not a callRecords resource"
    rid = resource[len(RESOURCE_PREFIX) :]
    if not is_guid(rid):
        return None, "resource id is not a GUID"
    data = item.resource_data
    if data is not None:
        if data.odata_type is not None and not is_call_record_type(data.odata_type):
            return None, "resourceData is not a callRecord"
        if data.id is not None and data.id.lower() != rid.lower():
            return None, "resourceData.id differs from resource"
    return rid.lower(), ""


def sort_batch(value: Sequence[object], client_state: str | tuple[str, ...]) -> Batch:
    """Keep genuine callRecord ids; drop (with a reason) everything else, item by item."""
    batch = Batch()
    seen: set[str] = set()
    for index, raw in enumerate(value):
        item = as_notification(raw)
        if isinstance(item, str):
            batch.dropped.append(f"item {index}: {item}")
            continue
        if not same_secret(item.client_state, client_state):
            batch.dropped.append(f"item {index}: clientState does not match")
            continue
        if item.lifecycle_event is not None:
            batch.dropped.append(f"item {index}: lifecycle event sent to the notification URL")
            continue
        change = item.change_type
        if change is not None and change not in ("created", "updated"):
            batch.dropped.append(f"item {index}: changeType {change[:20]!r}")
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


def notification_items(value: Sequence[object], client_state: str | tuple[str, ...]) -> Sorted:
    """A change-notification batch as the work items to queue (one per genuine record id)."""
    batch = sort_batch(value, client_state)
    items: list[WorkItem | ControlItem] = [
        WorkItem.new(rid, Source.NOTIFICATION) for rid in batch.ids
    ]
    return Sorted(items, batch.dropped, {"duplicates": batch.duplicates})
