"""The Graph subscription keeper: exactly one live subscription for this app, renewed early.

Graph drops a subscription silently when it expires (at most 4,230 minutes) or when it is
removed; the classic failure of call-record exporters is "deployed, no errors, no data".
The keeper is idempotent and runs hourly and on lifecycle events (not at start-up: every
scale-out would run it). ensure() holds a blob lease while it looks and acts, so instances
that run it together (a lifecycle action, an operator, the timer) leave exactly one
subscription and never delete one another's new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.clock import parse_graph_datetime, utcnow
from shared.graph import GraphError, NotFound, pages
from shared.ports import GraphPort, StatePort
from shared.settings import Settings

log = logging.getLogger("subscription")

RESOURCE = "communications/callRecords"
CHANGE_TYPE = "updated"  # creation fires "updated" too; "created,updated" would double the work
MAX_LIFETIME = timedelta(minutes=4230)
# Ask for a little less than the maximum, so clock skew never gets the request refused.
LIFETIME = MAX_LIFETIME - timedelta(minutes=10)
# Renew once less than this is left: with an hourly keeper that is ~30 chances before expiry.
RENEW_BEFORE = timedelta(hours=36)
STATE_BLOB = "subscription.json"
# Leased around every look-and-act on the subscription: without it an instance that lists the
# subscription another has just created, before that one has saved its secret's fingerprint,
# takes it for someone else's and replaces it, deleting it.
LOCK_BLOB = "subscription.lock"
# Graph's answer to a second subscription for the same resource and changeType
# (learn.microsoft.com/graph/api/subscription-post-subscriptions, "Duplicate subscription
# behavior"): 409 "Subscription Id <id> already exists for the requested combination".
_DUPLICATE = re.compile(r"Subscription Id\s+([0-9a-fA-F-]{36})\s+already exists", re.IGNORECASE)


class SubscriptionAction(StrEnum):
    """What ensure() did."""

    CREATED = "created"  # there was none (first start, or it was lost or expired)
    RENEWED = "renewed"
    KEPT = "kept"
    ADOPTED = "adopted"  # Graph said 409: another instance had just created it
    MOVED = "moved"  # PATCHed to the current notification URL
    REPLACED = "replaced"  # deleted and created again: new lifecycle URL or a new secret


class SubscriptionError(RuntimeError):
    """A subscription problem a person must fix; the message says what to do."""


@dataclass(frozen=True)
class Subscription:
    id: str
    expires: datetime
    notification_url: str
    lifecycle_url: str | None
    raw: dict[str, Any]

    @classmethod
    def from_graph(cls, data: dict[str, Any]) -> Subscription:
        return cls(
            id=str(data["id"]),
            expires=parse_graph_datetime(data["expirationDateTime"]),
            notification_url=str(data.get("notificationUrl", "")),
            lifecycle_url=data.get("lifecycleNotificationUrl"),
            raw=data,
        )

    def remaining(self, now: datetime | None = None) -> timedelta:
        return self.expires - (now or utcnow())


@dataclass(frozen=True)
class Outcome:
    """What ensure() did, the subscription, and (when notifications may have been missed)
    since when: the last time the previous subscription was known alive."""

    action: SubscriptionAction
    subscription: Subscription
    gap_since: datetime | None = None


def fingerprint(secret: str, subscription_id: str) -> str:
    """Which secret a subscription was created with, without keeping the secret: a slow,
    salted hash (the subscription id is the salt), so it cannot be reversed or guessed."""
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), subscription_id.encode(), 100_000)
    return digest.hex()[:32]


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _matches(data: dict[str, Any]) -> bool:
    """Ours by Graph's own rule: one subscription per app for a resource and changeType,
    whatever its URL (a new host name, a custom domain or a rotated ?code= changes that)."""
    kinds = {c.strip().lower() for c in str(data.get("changeType", "")).split(",")}
    return str(data.get("resource", "")).strip("/").lower() == RESOURCE.lower() and kinds == {
        CHANGE_TYPE
    }


def previous_id(known: dict[str, Any] | None, current: str) -> str | None:
    """The subscription this app had before ``current`` (kept so that the lifecycle events
    Graph still sends for a replaced one are recognised as the app's own)."""
    if not known:
        return None
    if known.get("subscriptionId") not in (None, current):
        return str(known["subscriptionId"])
    previous = known.get("previousSubscriptionId")
    return str(previous) if previous else None


async def known_subscription_ids(state: StatePort) -> frozenset[str]:
    """The ids of this app's current and previous subscriptions (lowercase), as remembered."""
    known, _ = await state.load(STATE_BLOB)
    if not known:
        return frozenset()
    ids = (known.get("subscriptionId"), known.get("previousSubscriptionId"))
    return frozenset(str(i).lower() for i in ids if isinstance(i, str) and i)


class SubscriptionKeeper:
    """Create, find, renew, reauthorize and delete this app's callRecords subscription."""

    def __init__(self, graph: GraphPort, settings: Settings, state: StatePort) -> None:
        self.graph = graph
        self.settings = settings
        self.state = state

    async def list(self, every: bool = False) -> list[Subscription]:
        """This app's callRecords subscriptions (resource and changeType ours, every page),
        latest expiry first; ``every``: all subscriptions the app can see."""
        found: list[Subscription] = []
        async with contextlib.aclosing(pages(self.graph, self.graph.url("subscriptions"))) as it:
            async for page in it:
                found += [
                    Subscription.from_graph(s) for s in page.objects() if every or _matches(s)
                ]
        return sorted(found, key=lambda s: s.expires, reverse=True)

    def is_ours(self, sub: Subscription) -> bool:
        return _matches(sub.raw)

    def _at_current_urls(self, sub: Subscription) -> tuple[bool, bool]:
        """(notification URL current, lifecycle URL current)."""
        return (
            sub.notification_url == self.settings.notification_url,
            (sub.lifecycle_url or None) == (self.settings.lifecycle_notification_url or None),
        )

    async def remember(self, sub: Subscription, secret_fingerprint: str | None = None) -> None:
        """Note the subscription, the fingerprint of its secret and that it is alive now."""
        known, _ = await self.state.load(STATE_BLOB)
        if secret_fingerprint is None and known and known.get("subscriptionId") == sub.id:
            secret_fingerprint = str(known.get("clientStateFingerprint") or "") or None
        await self.state.save(
            STATE_BLOB,
            {
                "subscriptionId": sub.id,
                "previousSubscriptionId": previous_id(known, sub.id),
                "clientStateFingerprint": secret_fingerprint,
                "aliveAt": utcnow().isoformat(),
                "expires": sub.expires.isoformat(),
            },
        )

    async def _last_alive(self) -> datetime | None:
        known, _ = await self.state.load(STATE_BLOB)
        try:
            return datetime.fromisoformat(str(known["aliveAt"])) if known else None
        except (KeyError, ValueError):
            return None

    async def _secret_is_current(self, sub: Subscription) -> bool:
        """Was ``sub`` created with GRAPH_CLIENT_STATE? From Graph's answer when it shows the
        secret, else from the fingerprint kept when it was created; unknown counts as no."""
        shown = sub.raw.get("clientState")
        if isinstance(shown, str) and shown:
            return hmac.compare_digest(shown.encode(), self.settings.client_state.encode())
        known, _ = await self.state.load(STATE_BLOB)
        if not known or known.get("subscriptionId") != sub.id:
            return False
        expected = fingerprint(self.settings.client_state, sub.id)
        return hmac.compare_digest(str(known.get("clientStateFingerprint") or ""), expected)

    async def get(self, subscription_id: str) -> Subscription:
        """One subscription by id; NotFound once it is deleted or expired."""
        return Subscription.from_graph(
            await self.graph.get(self.graph.url(f"subscriptions/{subscription_id}"))
        )

    async def create(self) -> Subscription:
        body = {
            "changeType": CHANGE_TYPE,
            "notificationUrl": self.settings.require_notification_url(),
            "lifecycleNotificationUrl": self.settings.lifecycle_notification_url,
            "resource": RESOURCE,
            "expirationDateTime": _iso(utcnow() + LIFETIME),
            "clientState": self.settings.client_state,
        }
        try:
            created = Subscription.from_graph(
                await self.graph.request("POST", self.graph.url("subscriptions"), body)
            )
        except GraphError as exc:
            raise self._explain(exc) from exc
        await self.remember(created, fingerprint(self.settings.client_state, created.id))
        return created

    async def move(self, sub: Subscription) -> Subscription:
        """PATCH the current notification URL (and a fresh expiry); Graph validates it first."""
        data = await self.graph.request(
            "PATCH",
            self.graph.url(f"subscriptions/{sub.id}"),
            {
                "notificationUrl": self.settings.require_notification_url(),
                "expirationDateTime": _iso(utcnow() + LIFETIME),
            },
        )
        return Subscription.from_graph({**sub.raw, **data})

    def _explain(self, exc: GraphError) -> Exception:
        if exc.status == 409:
            return exc  # a duplicate: ensure() adopts the one Graph names
        if exc.status == 403:
            return SubscriptionError(
                "Graph refused the subscription (403): either the managed identity lacks the "
                "CallRecords.Read.All application role (grant it: infra/README.md) or the tenant "
                f"already has 100 callRecords subscriptions. Graph said: {exc.message}"
            )
        if exc.status == 400:
            return SubscriptionError(
                "Graph refused the subscription (400), usually because the validation handshake "
                f"to {self.settings.notification_url} or the lifecycle URL failed: check that "
                f"the URLs are public HTTPS and answer within 10 s. Graph said: {exc.message}"
            )
        return exc

    async def renew(self, sub: Subscription) -> Subscription:
        """PATCH a new expiry (also reauthorizes); NotFound means it is gone."""
        data = await self.graph.request(
            "PATCH",
            self.graph.url(f"subscriptions/{sub.id}"),
            {"expirationDateTime": _iso(utcnow() + LIFETIME)},
        )
        return Subscription.from_graph({**sub.raw, **data})

    async def reauthorize(self, subscription_id: str) -> None:
        await self.graph.request(
            "POST", self.graph.url(f"subscriptions/{subscription_id}/reauthorize")
        )

    async def delete(self, subscription_id: str) -> None:
        await self.graph.request("DELETE", self.graph.url(f"subscriptions/{subscription_id}"))

    async def ensure(self, force_renew: bool = False) -> Outcome:
        """ensure_unlocked() under the subscription lease (one instance at a time)."""
        self.settings.require_notification_url()
        async with self.state.exclusive(LOCK_BLOB):
            return await self.ensure_unlocked(force_renew)

    async def ensure_unlocked(self, force_renew: bool = False) -> Outcome:
        """End with exactly one live subscription for callRecords, at the current URLs, made
        with the current secret, and with RENEW_BEFORE or more left.

        Ours is found by resource and changeType (Graph allows one per app): at another URL it
        is moved (PATCH notificationUrl), or replaced when the lifecycle URL or the secret
        differ (neither can be patched). Never deletes on a transient error: a failed renewal
        leaves the old one in place to be tried again next hour.
        """
        self.settings.require_notification_url()
        subs = await self.list()
        if not subs:
            return await self._create_or_adopt(gap_since=await self._last_alive())
        current, extra = subs[0], subs[1:]
        for other in extra:  # cannot exist under Graph's duplicate rule; never keep two
            log.warning("deleting surplus subscription %s (keeping %s)", other.id, current.id)
            await self._delete_quietly(other.id)
        return await self._settle(current, force_renew)

    async def _create_or_adopt(self, gap_since: datetime | None) -> Outcome:
        try:
            return Outcome(SubscriptionAction.CREATED, await self.create(), gap_since)
        except GraphError as exc:
            if exc.status != 409:
                raise
            match = _DUPLICATE.search(exc.message)
            # Created meanwhile (another instance), or not listed to us yet: adopt that one.
            existing = [await self.get(match.group(1))] if match else await self.list()
            if not existing:
                raise
            outcome = await self._settle(existing[0], force_renew=False)
            if outcome.action in (SubscriptionAction.KEPT, SubscriptionAction.RENEWED):
                return Outcome(SubscriptionAction.ADOPTED, outcome.subscription)
            return outcome

    async def _delete_quietly(self, subscription_id: str) -> None:
        try:
            await self.delete(subscription_id)
        except NotFound:
            pass

    async def _settle(self, current: Subscription, force_renew: bool) -> Outcome:
        notification_ok, lifecycle_ok = self._at_current_urls(current)
        secret_ok = await self._secret_is_current(current)
        if not (lifecycle_ok and secret_ok):
            why = "the lifecycle URL changed" if not lifecycle_ok else "it has another secret"
            log.warning("replacing subscription %s: %s", current.id, why)
            alive = utcnow()
            await self._delete_quietly(current.id)
            created = await self.create()
            return Outcome(SubscriptionAction.REPLACED, created, gap_since=alive)
        if not notification_ok:
            log.warning(
                "moving subscription %s to the current notification URL (was another URL)",
                current.id,
            )
            try:
                moved = await self.move(current)
            except NotFound:
                return await self._create_or_adopt(gap_since=await self._last_alive())
            await self.remember(moved)
            return Outcome(SubscriptionAction.MOVED, moved)
        if not force_renew and current.remaining() > RENEW_BEFORE:
            await self.remember(current)
            return Outcome(SubscriptionAction.KEPT, current)
        try:
            renewed = await self.renew(current)
        except NotFound:
            log.warning("subscription %s vanished; creating a new one", current.id)
            return await self._create_or_adopt(gap_since=await self._last_alive())
        await self.remember(renewed)
        return Outcome(SubscriptionAction.RENEWED, renewed)
