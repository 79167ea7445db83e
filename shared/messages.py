"""The queue message: a record id plus what the retry policy needs (source, first seen, attempts).

JSON text; the queue client base64-encodes it, as the Functions queue trigger expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson

from shared.clock import utcnow
from shared.ids import normalize_id
from shared.jsonvalues import as_object


class Source(StrEnum):
    """Who queued a record id (kept in the message, shown in poison and logs)."""

    NOTIFICATION = "notification"
    LIFECYCLE = "lifecycle"
    RECONCILE = "reconcile"
    BACKFILL = "backfill"
    CLI = "cli"
    REPLAY = "replay"
    RETRY = "retry"


class ControlAction(StrEnum):
    """What a lifecycle notification asks the queue worker to do."""

    REAUTHORIZE = "reauthorize"
    RECREATE = "recreate"
    RECONCILE = "reconcile"
    RECONCILE_SLICE = "reconcileSlice"  # one hour of start times: [since, until)


MAX_MESSAGE_BYTES = 16 * 1024
# Attempts are counted for the backoff only (the give-up rule is time since first seen), so a
# larger count is clamped here, never a reason to call a message malformed.
MAX_ATTEMPT = 10_000


class MessageError(ValueError):
    """A queue message that can never be processed (not JSON, no GUID id, ...)."""


# C0 and C1 controls (ANSI escape sequences start with ESC, or CSI in C1), the line and
# paragraph separators, and the bidirectional overrides that make text read other than it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def for_terminal(text: object) -> str:
    """Text taken from a queue message, safe to print to a person's terminal: every control
    character shown as its escape (``\\x1b``, ``\\n``, ``\\u202e``), so a message cannot move
    the cursor, rewrite earlier lines or change the terminal's title."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def clamp_attempt(value: object) -> int:
    """The attempt counter as 0..MAX_ATTEMPT whatever the message holds (a counter that is not
    a number starts again at 0: it only shapes the backoff)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if value != value:  # NaN
        return 0
    return int(min(max(value, 0), MAX_ATTEMPT))


@dataclass(frozen=True)
class WorkItem:
    """One record to archive."""

    id: str
    source: Source = Source.NOTIFICATION
    first_seen: datetime | None = None
    attempt: int = 0
    last_error: str | None = None
    reason: str | None = None  # set on poison messages: why it was parked

    def to_json(self) -> str:
        body: dict[str, object] = {
            "id": self.id,
            "source": self.source,
            "firstSeen": (self.first_seen or utcnow()).isoformat(),
            "attempt": self.attempt,
        }
        if self.last_error:
            body["lastError"] = self.last_error[:500]
        if self.reason:
            body["reason"] = self.reason[:500]
        return orjson.dumps(body).decode()

    def retried(self, error: str) -> WorkItem:
        """The same item one attempt later, remembering why (and when it was first seen)."""
        return replace(
            self,
            attempt=min(self.attempt + 1, MAX_ATTEMPT),
            last_error=error,
            first_seen=self.first_seen or utcnow(),
        )

    def poisoned(self, reason: str, error: str | None = None) -> WorkItem:
        """The item as parked in the poison queue: why, and the last error."""
        return replace(self, reason=reason, last_error=error or self.last_error)

    def replayed(self) -> WorkItem:
        """A fresh start for an item taken back from poison (new window, no attempts)."""
        return WorkItem(id=self.id, source=Source.REPLAY, first_seen=utcnow())

    @classmethod
    def new(cls, record_id: str, source: Source) -> WorkItem:
        return cls(id=normalize_id(record_id), source=Source(source), first_seen=utcnow())

    @classmethod
    def from_body(cls, body: bytes | str) -> WorkItem:
        """Parse a message body; a bare GUID is accepted too (hand-queued ids)."""
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message is {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
        text = raw.strip()
        if text[:1] != b"{":
            try:
                return cls.new(text.decode("ascii").strip('"'), Source.CLI)
            except (UnicodeDecodeError, ValueError) as exc:
                raise MessageError("message is neither JSON nor a GUID") from exc
        try:
            data = as_object(orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            raise MessageError(f"message is not valid JSON: {exc}") from exc
        if data is None:
            raise MessageError("message JSON is not an object")
        try:
            record_id = normalize_id(data.get("id"))
        except ValueError as exc:
            raise MessageError(str(exc)) from exc
        try:
            source = Source(data.get("source", Source.NOTIFICATION))
        except ValueError as exc:
            raise MessageError(f"unknown source {str(data.get('source'))[:40]!r}") from exc
        attempt = clamp_attempt(data.get("attempt", 0))
        first_seen = None
        if data.get("firstSeen") is not None:
            try:
                first_seen = datetime.fromisoformat(str(data["firstSeen"]))
            except ValueError as exc:
                raise MessageError("firstSeen is not an ISO date-time") from exc
            if first_seen.tzinfo is None:
                first_seen = first_seen.replace(tzinfo=UTC)
            # A first sighting in the future (year 9999, or a clock ahead) would keep the
            # record inside its retry window for ever: it is taken as now.
            first_seen = min(first_seen, utcnow())
        last = data.get("lastError")
        reason = data.get("reason")
        return cls(
            id=record_id,
            source=source,
            first_seen=first_seen,
            attempt=attempt,
            last_error=str(last)[:500] if last else None,
            reason=str(reason)[:500] if reason else None,
        )


@dataclass(frozen=True)
class ControlItem:
    """Work a lifecycle notification asks for, queued so the webhook can answer 202 at once."""

    action: ControlAction
    subscription_id: str | None = None
    hours: int | None = None
    since: datetime | None = None  # RECONCILE_SLICE: the start times [since, until) to list
    until: datetime | None = None
    # RECONCILE_SLICE: the List next link of the first day where an earlier invocation, out of
    # time, stopped (None: from the first page)
    resume_from: str | None = None

    def to_json(self) -> str:
        body: dict[str, object] = {"control": self.action}
        if self.subscription_id:
            body["subscriptionId"] = self.subscription_id
        if self.hours:
            body["hours"] = self.hours
        if self.since and self.until:
            body["since"] = self.since.isoformat()
            body["until"] = self.until.isoformat()
        if self.resume_from:
            body["resumeFrom"] = self.resume_from
        return orjson.dumps(body).decode()

    @classmethod
    def reconcile_slice(
        cls, since: datetime, until: datetime, resume_from: str | None = None
    ) -> ControlItem:
        return cls(ControlAction.RECONCILE_SLICE, since=since, until=until, resume_from=resume_from)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ControlItem:
        try:
            action = ControlAction(data.get("control"))
        except ValueError as exc:
            raise MessageError(f"unknown control action {str(data.get('control'))[:40]!r}") from exc
        sub = data.get("subscriptionId")
        hours = data.get("hours")
        if sub is not None:
            try:
                sub = normalize_id(sub)
            except ValueError as exc:
                raise MessageError(str(exc)) from exc
        if hours is not None and (not isinstance(hours, int) or not 1 <= hours <= 24 * 30):
            raise MessageError("hours must be 1-720")
        since, until = _time(data, "since"), _time(data, "until")
        if action is ControlAction.RECONCILE_SLICE:
            if since is None or until is None or not since < until:
                raise MessageError("a reconcile slice needs since < until (ISO date-times)")
            if until - since > MAX_SLICE:
                raise MessageError(f"a reconcile slice spans at most {MAX_SLICE}")
        resume = data.get("resumeFrom")
        if resume is not None and (
            action is not ControlAction.RECONCILE_SLICE
            or not isinstance(resume, str)
            or not 0 < len(resume) <= MAX_LINK
        ):
            raise MessageError(
                f"resumeFrom is a reconcile slice's next link of at most {MAX_LINK} characters"
            )
        return cls(action, sub, hours, since, until, resume)


MAX_SLICE = timedelta(days=1)
MAX_LINK = 8192  # a List next link (its skip token) is far shorter; a queue message holds 64 KB


def _time(data: dict[str, object], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise MessageError(f"{key} is not an ISO date-time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_message(body: bytes | str) -> WorkItem | ControlItem:
    """A queue message: a record to archive, or a control action."""
    raw = body.encode() if isinstance(body, str) else body
    if raw.lstrip()[:1] == b"{" and b'"control"' in raw:
        try:
            data = as_object(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise MessageError(f"message is not valid JSON: {exc}") from exc
        if data is not None and "control" in data:
            return ControlItem.from_dict(data)
    return WorkItem.from_body(raw)
