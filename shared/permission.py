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

The default grace is 48 hours, not the documented 24: the clock starts at the first 403,
which can come before anyone has granted the role (a deployment without Privileged Role
Administrator grants it by hand, infra/README.md), and the 24 hours of token caching start
only at the grant. A day to grant, a day to propagate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
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

_refusal_known = False  # this process saw a refusal: the next success clears the blob


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


async def note_refusal(
    state: StatePort, exc: BaseException, now: datetime | None = None
) -> Refusal:
    """Record a 403 seen now; the episode it belongs to (with when it was first seen)."""
    global _refusal_known
    _refusal_known = True
    now = now or utcnow()
    detail = str(exc)[:300]
    data, etag = await state.load(PERMISSION_BLOB)
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
    """A Graph read succeeded: a refusal this process saw is over (cheap when there was none)."""
    global _refusal_known
    if not _refusal_known:
        return
    try:
        await state.delete(PERMISSION_BLOB)
    except AzureError as exc:  # the record is archived all the same; the next success retries
        log.warning("could not clear the refusal note: %s", type(exc).__name__)
        return
    _refusal_known = False
    log.info("Graph accepts the app again: the %s refusal is over", REQUIRED_ROLE)


async def within_grace(
    state: StatePort, exc: BaseException, grace_hours: float, now: datetime | None = None
) -> bool:
    """True when ``exc`` is a 403 still inside the grace period (retry it, never park it)."""
    if not is_refusal(exc) or grace_hours <= 0:
        return False
    now = now or utcnow()
    return (await note_refusal(state, exc, now)).in_grace(now, grace_hours)


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
