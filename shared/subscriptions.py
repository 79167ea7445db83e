"""The Graph subscription keeper: exactly one live subscription for this app, renewed early.

Graph drops a subscription silently when it expires (at most 4,230 minutes) or when it is
removed; the classic failure of call-record exporters is "deployed, no errors, no data".
The keeper is idempotent and runs hourly, at start-up, and on lifecycle events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.blobstore import parse_graph_datetime
from shared.graph import GraphClient, GraphError, NotFound
from shared.messages import utcnow
from shared.settings import Settings

log = logging.getLogger("subscription")

RESOURCE = "communications/callRecords"
CHANGE_TYPE = "updated"  # creation fires "updated" too; "created,updated" would double the work
MAX_LIFETIME = timedelta(minutes=4230)
# Ask for a little less than the maximum, so clock skew never gets the request refused.
LIFETIME = MAX_LIFETIME - timedelta(minutes=10)
# Renew once less than this is left: with an hourly keeper that is ~30 chances before expiry.
RENEW_BEFORE = timedelta(hours=36)


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
    """What ensure() did: created, renewed, adopted or kept, and the subscription."""

    action: str
    subscription: Subscription


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _matches(data: dict[str, Any], settings: Settings) -> bool:
    return (
        str(data.get("resource", "")).strip("/").lower() == RESOURCE.lower()
        and data.get("notificationUrl") == settings.notification_url
    )


class SubscriptionKeeper:
    """Create, find, renew, reauthorize and delete this app's callRecords subscription."""

    def __init__(self, graph: GraphClient, settings: Settings) -> None:
        self.graph = graph
        self.settings = settings

    async def list(self, every: bool = False) -> list[Subscription]:
        """This app's subscriptions for callRecords with our notification URL (every page),
        latest expiry first; ``every``: all subscriptions the app can see, whatever the URL."""
        found: list[Subscription] = []
        url: str | None = self.graph.url("subscriptions")
        while url:
            page = await self.graph.get(url)
            found += [
                Subscription.from_graph(s)
                for s in page.get("value", [])
                if every or _matches(s, self.settings)
            ]
            url = page.get("@odata.nextLink")
        return sorted(found, key=lambda s: s.expires, reverse=True)

    def is_ours(self, sub: Subscription) -> bool:
        return _matches(sub.raw, self.settings)

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
            return Subscription.from_graph(
                await self.graph.request("POST", self.graph.url("subscriptions"), body)
            )
        except GraphError as exc:
            raise self._explain(exc) from exc

    def _explain(self, exc: GraphError) -> Exception:
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
        """Make sure one live subscription exists and has RENEW_BEFORE or more left.

        Never deletes on a transient error: a failed renewal leaves the old one in place
        to be tried again next hour.
        """
        self.settings.require_notification_url()
        subs = await self.list()
        if subs:
            current = subs[0]
            if len(subs) > 1:
                log.warning(
                    "%d subscriptions for %s; keeping %s (the others expire on their own)",
                    len(subs),
                    self.settings.notification_url,
                    current.id,
                )
            if not force_renew and current.remaining() > RENEW_BEFORE:
                return Outcome("kept", current)
            try:
                return Outcome("renewed", await self.renew(current))
            except NotFound:
                log.warning("subscription %s vanished; creating a new one", current.id)
        try:
            created = await self.create()
        except GraphError as exc:
            if exc.status != 409:
                raise
            # Someone (another instance) created it meanwhile: adopt theirs.
            subs = await self.list()
            if not subs:
                raise
            return Outcome("adopted", subs[0])
        return Outcome("created", created)
