"""Graph's 403 during a grace period: retried with back-off, never parked, named at once.

A 403 from Graph means the app's identity lacks the application role CallRecords.Read.All.
After a fresh grant that is usually not yet true for long: a managed identity's tokens are
cached by the platform and carry the roles of when they were issued, so a new app role can
take up to about 24 hours to reach them ("Limitation of using managed identities for
authorization": learn.microsoft.com/entra/identity/managed-identities-azure-resources/managed-identity-best-practice-recommendations).
Parking every record of that day would turn a waiting game into a replay for a person.

So for ``GRAPH_PERMISSION_GRACE_HOURS`` after a 403 is first seen, the records
and reconcile slices that meet it are put back on the queue (records with the long
``retry.refused`` back-off, slices as after any transient fault); only after that is a 403
permanent. When the refusal was first seen is
kept in the state store (one small blob), so every instance and every restart counts from
the same moment, and health names the missing permission from the first refusal on.
A refusal episode ends when a Graph read succeeds again, or when no 403 has been seen for
``EPISODE_GAP`` (longer than the longest back-off, so a steady refusal never looks new).

Reads run concurrently, so the moment of the grant has two races, both of which would leave
health naming a refusal that is over (for up to ``EPISODE_GAP``):
- a 403 to a request sent before another read of this instance succeeded is stale: the grant
  has reached this instance's token. It is not noted, and the record is retried soon
  (``Verdict.STALE``), not after the refusal's long back-off;
- a success on one instance must end a refusal another instance noted (that one may have
  been recycled since): a success deletes the note whenever this instance saw a refusal, and
  at most once every ``CLEAR_EVERY`` otherwise.

The default grace is 48 hours, not the documented 24: the clock starts at the first 403,
which can come before anyone has granted the role (a deployment without Privileged Role
Administrator grants it by hand, infra/README.md), and the 24 hours of token caching start
only at the grant. A day to grant, a day to propagate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from azure.core.exceptions import AzureError

from shared.clock import parse_graph_datetime, utcnow
from shared.graph import GraphError
from shared.ports import StatePort

log = logging.getLogger(__name__)

PERMISSION_BLOB = "graph-permission.json"
REQUIRED_ROLE = "CallRecords.Read.All"
# Longer than the longest wait of retry.refused (6 h + 50% = 9 h at the default settings):
# records meeting a steady 403 come back at least that often, even in a tenant with no new
# calls overnight, so lastSeen stays fresh and the grace is not started again while the
# refusal lasts. A unit test keeps the two in step.
EPISODE_GAP = timedelta(hours=12)
# lastSeen is rewritten at most this often: a burst of refused records is one write.
TOUCH_EVERY = timedelta(minutes=1)
# A success with no refusal seen here still clears another instance's note this often.
CLEAR_EVERY = timedelta(minutes=1)


class Verdict(Enum):
    """What a 403 leads to."""

    STALE = "stale"  # sent before a later read succeeded here: retry soon, note nothing
    WAIT = "wait"  # inside the grace: the refusal's long back-off, never parked
    OVER = "over"  # past the grace, or no grace configured: permanent


@dataclass
class _ProcessView:
    """What this process knows, between the state blob's reads (monotonic seconds)."""

    refusal_seen: bool = False  # the next success deletes the note
    last_success: float | None = None
    last_clear: float | None = None

    def stale(self, sent: float | None) -> bool:
        return sent is not None and self.last_success is not None and self.last_success > sent


_view = _ProcessView()


def is_refusal(exc: BaseException) -> bool:
    """Graph's 403: the identity's token lacks the app role (a 401 is a token problem)."""
    return isinstance(exc, GraphError) and exc.status == 403


@dataclass(frozen=True)
class Refusal:
    first_seen: datetime
    last_seen: datetime
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "firstSeen": self.first_seen.isoformat(),
            "lastSeen": self.last_seen.isoformat(),
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Refusal | None:
        if not data:
            return None
        try:
            first = parse_graph_datetime(data.get("firstSeen"))
            last = parse_graph_datetime(data.get("lastSeen"))
        except ValueError:
            return None
        return cls(first, last, str(data.get("detail") or "")[:300])

    def current(self, now: datetime) -> bool:
        return now - self.last_seen < EPISODE_GAP

    def in_grace(self, now: datetime, grace_hours: float) -> bool:
        return now - self.first_seen < timedelta(hours=grace_hours)


async def current_refusal(state: StatePort, now: datetime | None = None) -> Refusal | None:
    """The refusal episode in progress, if any (health reads this)."""
    data, _ = await state.load(PERMISSION_BLOB)
    refusal = Refusal.from_json(data)
    return refusal if refusal and refusal.current(now or utcnow()) else None


def sent_now() -> float:
    """The moment a Graph read is sent, for ``note_refusal``'s and ``judge``'s ``sent``."""
    return time.monotonic()


async def note_refusal(
    state: StatePort, exc: BaseException, sent: float | None = None, now: datetime | None = None
) -> Refusal | None:
    """Record a 403 to a read sent at ``sent`` (``sent_now()``); the episode it belongs to,
    with when it was first seen, or None when the 403 is stale (see the module docstring)."""
    if _view.stale(sent):
        return None
    try:
        refusal = await _note(state, str(exc)[:300], now or utcnow(), sent)
    finally:
        # After the awaits: a success clearing the note meanwhile must not forget this one.
        _view.refusal_seen = True
    return None if _view.stale(sent) else refusal  # a read succeeded while this one was noted


async def _note(state: StatePort, detail: str, now: datetime, sent: float | None) -> Refusal | None:
    data, etag = await state.load(PERMISSION_BLOB)
    if _view.stale(sent):  # a read succeeded (and cleared the note) while this one loaded it
        return None
    known = Refusal.from_json(data)
    if known is not None and known.current(now):
        if now - known.last_seen >= TOUCH_EVERY:
            touched = Refusal(known.first_seen, now, detail)
            await state.save(PERMISSION_BLOB, touched.to_json(), etag)  # lost race: harmless
            return touched
        return known
    fresh = Refusal(now, now, detail)
    if await state.save(PERMISSION_BLOB, fresh.to_json(), etag if etag else "") is None:
        # Another instance started the episode a moment ago: count from its first sighting.
        data, _ = await state.load(PERMISSION_BLOB)
        return Refusal.from_json(data) or fresh
    log.error(
        "Graph refuses the app (403): the managed identity needs the application role %s on "
        "Microsoft Graph; a new grant can take up to 24 h to reach its tokens, so records are "
        "retried, not parked, for the grace period",
        REQUIRED_ROLE,
    )
    return fresh


async def note_success(state: StatePort) -> None:
    """A Graph read succeeded: a refusal is over. Free when this process saw none and cleared
    the note less than ``CLEAR_EVERY`` ago; otherwise one delete."""
    now = time.monotonic()
    _view.last_success = now
    seen = _view.refusal_seen
    if not seen and _view.last_clear is not None:
        if now - _view.last_clear < CLEAR_EVERY.total_seconds():
            return
    # Before the await: a refusal noted during the delete sets it again (note_refusal).
    _view.refusal_seen, _view.last_clear = False, now
    try:
        await state.delete(PERMISSION_BLOB)
    except AzureError as exc:  # the record is archived all the same; the next success retries
        log.warning("could not clear the refusal note: %s", type(exc).__name__)
        _view.refusal_seen, _view.last_clear = _view.refusal_seen or seen, None
        return
    if seen:
        log.info("Graph accepts the app again: the %s refusal is over", REQUIRED_ROLE)


async def judge(
    state: StatePort,
    exc: BaseException,
    grace_hours: float,
    sent: float | None = None,
    now: datetime | None = None,
) -> Verdict:
    """What the 403 ``exc`` to a read sent at ``sent`` leads to (noting it for health)."""
    now = now or utcnow()
    refusal = await note_refusal(state, exc, sent, now)
    if refusal is None:
        return Verdict.STALE
    if grace_hours <= 0 or not refusal.in_grace(now, grace_hours):
        return Verdict.OVER
    return Verdict.WAIT


def health_problem(
    refusal: Refusal, grace_hours: float, client_id: str | None, now: datetime
) -> str:
    """The line health shows while Graph refuses the app: the permission, and what happens."""
    identity = f"the managed identity {client_id}" if client_id else "the app's managed identity"
    until = refusal.first_seen + timedelta(hours=grace_hours)
    then = (
        f"records are retried, not parked, until {until:%Y-%m-%dT%H:%M:%SZ}"
        if refusal.in_grace(now, grace_hours)
        else "the grace period is over: records are parked (replay them once it is granted)"
    )
    return (
        f"Graph answers 403 since {refusal.first_seen:%Y-%m-%dT%H:%M:%SZ}: {identity} needs the "
        f"application role {REQUIRED_ROLE} on Microsoft Graph (infra/README.md; a new grant "
        f"can take up to 24 h to reach the identity's tokens); {then}"
    )
