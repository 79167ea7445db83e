"""Outgoing HTTP: the validation handshake, change notifications and lifecycle events.

Follows concepts/change-notifications-delivery-webhooks.md: notifications are batched in a
``value`` array per notification URL (query string kept verbatim), a 2xx answer delivers
them, anything else or a timeout is retried with exponential backoff and finally dropped.
Graph retries for up to 4 hours; here the schedule is short and configurable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from devtools.graphsim import records
from devtools.graphsim.records import RecordSpec
from devtools.graphsim.state import SimState, Subscription, utcnow

log = logging.getLogger("graphsim.notify")

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def graph_offset_time(value: datetime) -> str:
    """The notification payload's form: 2025-06-12T10:00:00.000+00:00."""
    return value.isoformat(timespec="milliseconds")


EXAMPLE_SUBSCRIPTION = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
EXAMPLE_TENANT = "dc368399-474c-4d40-900c-6265431fd81f"


def change_notification(
    record_id: str,
    client_state: str,
    *,
    subscription_id: str = EXAMPLE_SUBSCRIPTION,
    expires: str = "2030-06-12T10:00:00.000+00:00",
    tenant_id: str = EXAMPLE_TENANT,
    change: str = "updated",
) -> dict[str, Any]:
    """One callRecords change notification, exactly as Graph sends it (learn.microsoft.com/graph/changenotifications-for-callrecords).

    The simulator's deliveries use it, and so do tests, chaos and benchmarks that play Graph.
    """
    resource = f"communications/callRecords/{record_id}"
    return {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": expires,
        "changeType": change,
        "clientState": client_state,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.callRecord",
            "@odata.id": resource,
            "id": record_id,
        },
        "tenantId": tenant_id,
    }


def validation_token() -> str:
    """Like Graph's: words, spaces, a colon, plus characters that must be URL-encoded, and an
    opaque tail of any length up to a few KiB: the token's format "can change without notice"
    (learn.microsoft.com/graph/change-notifications-delivery-webhooks), so a client must echo
    whatever it gets rather than expect today's short sentence."""
    tail = secrets.token_urlsafe(secrets.randbelow(3000) + 6)
    return (
        "Validation: Testing client application reachability for subscription Request-Id: "
        f"{secrets.token_hex(4)}-{secrets.token_hex(2)} +/=&?%#<b>{tail}"
    )


def with_query(url: str, name: str, value: str) -> URL:
    """``url`` with one more query parameter, the existing query string kept byte for byte."""
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    text = f"{base}{joiner}{name}={quote(value, safe='')}"
    return URL(text + (f"#{fragment}" if fragment else ""), encoded=True)


@dataclass
class _Pending:
    subscription_id: str
    body: dict[str, Any]


class Notifier:
    """Owns the outgoing HTTP session and the delivery tasks."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.paused = False
        self.hold = False
        self.log: deque[dict[str, Any]] = deque(maxlen=500)
        self._pending: dict[str, list[_Pending]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=True)
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._runner, *self._tasks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session:
            await self._session.close()

    def clear(self) -> None:
        self._pending.clear()
        for task in self._tasks:
            task.cancel()
        self.paused = self.hold = False
        self.log.clear()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Notifier.start() was not awaited"
        return self._session

    # ------------------------------------------------------------ handshake

    async def validate(self, url: str) -> str | None:
        """None when ``url`` passes the validationToken handshake, else the reason it failed."""
        token = validation_token()
        target = with_query(url, "validationToken", token)
        timeout = self.state.config.validation_timeout_seconds
        reason: str | None = None
        try:
            async with asyncio.timeout(timeout):
                async with self.session.post(
                    target,
                    data=b"",
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        reason = f"the endpoint answered {resp.status}, expected 200"
                    elif resp.content_type != "text/plain":
                        reason = f"Content-Type was {resp.content_type!r}, expected text/plain"
                    elif body.decode("utf-8", "replace") != token:
                        reason = "the body was not the decoded validationToken"
        except TimeoutError:
            reason = f"no answer within {timeout:g} seconds"
        except aiohttp.ClientError as exc:
            reason = f"the endpoint could not be reached ({type(exc).__name__})"
        self.state.stats.validations["failed" if reason else "ok"] += 1
        self.log.append({"at": time.time(), "kind": "validation", "url": url, "error": reason})
        return reason

    # ------------------------------------------------------------ change notifications

    def record_changed(self, spec: RecordSpec, created: bool) -> int:
        """Queue notifications for every live subscription that covers this record; returns
        how many were queued (0 while paused in drop mode)."""
        now = utcnow()
        queued = 0
        for sub in self.state.live_subscriptions(now):
            wanted = sub.change_types()
            kinds = [
                k for k in (("created", "updated") if created else ("updated",)) if k in wanted
            ]
            person = sub.participant_filter()
            if not kinds or (person and not records.has_participant(spec, person)):
                continue
            for kind in kinds:
                if self.paused and not self.hold:
                    self.state.stats.notifications["dropped"] += 1
                    continue
                body = self._notification(sub, spec.id, kind)
                self._pending.setdefault(sub.notification_url, []).append(_Pending(sub.id, body))
                self.state.stats.notifications["queued"] += 1
                queued += 1
        if queued and not self.paused:
            self._wake.set()
        return queued

    def _notification(self, sub: Subscription, record_id: str, change: str) -> dict[str, Any]:
        return change_notification(
            record_id,
            sub.client_state or "",
            subscription_id=sub.id,
            expires=graph_offset_time(sub.expiration),
            tenant_id=self.state.tenant_id,
            change=change,
        )

    def pause(self, hold: bool) -> None:
        self.paused, self.hold = True, hold

    def resume(self) -> None:
        self.paused = self.hold = False
        if self._pending:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.state.config.batch_window_ms / 1000)
            if self.paused:
                continue
            pending, self._pending = self._pending, {}
            size = max(1, self.state.config.max_batch)
            for url, items in pending.items():
                for i in range(0, len(items), size):
                    task = asyncio.create_task(self._deliver(url, items[i : i + size]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, payload: bytes, limit: float) -> tuple[int, str | None]:
        try:
            async with asyncio.timeout(limit):
                async with self.session.post(
                    URL(url, encoded=True),
                    data=payload,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                    allow_redirects=False,
                ) as resp:
                    await resp.read()
                    return resp.status, None
        except TimeoutError:
            return 0, f"timeout after {limit:g}s"
        except aiohttp.ClientError as exc:
            return 0, type(exc).__name__

    async def _deliver(self, url: str, items: list[_Pending]) -> None:
        config, counts = self.state.config, self.state.stats.notifications
        attempt = 1
        while True:
            now = utcnow()
            subs = self.state.subscriptions
            live = [p for p in items if (s := subs.get(p.subscription_id)) and s.live(now)]
            counts["dropped"] += len(items) - len(live)
            items = live
            if not items:
                return
            payload = orjson.dumps({"value": [p.body for p in items]})
            status, error = await self._post(url, payload, config.delivery_timeout_seconds)
            counts["posts"] += 1
            ok = 200 <= status < 300
            self.log.append(
                {
                    "at": time.time(),
                    "kind": "notification",
                    "url": url,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "ids": [p.body["resourceData"]["id"] for p in items],
                    "changeTypes": [p.body["changeType"] for p in items],
                }
            )
            if ok:
                counts["delivered"] += len(items)
                return
            counts["failed"] += len(items)
            if attempt >= config.max_attempts:
                counts["discarded"] += len(items)
                log.info("gave up on %d notifications to %s", len(items), url)
                return
            counts["retried"] += len(items)
            await asyncio.sleep(config.retry_base_seconds * 2 ** (attempt - 1))
            attempt += 1

    # ------------------------------------------------------------ lifecycle

    async def lifecycle(self, sub: Subscription, event: str) -> dict[str, Any]:
        """POST one lifecycle event to the subscription's lifecycleNotificationUrl (no retries);
        ``subscriptionRemoved`` then deletes the subscription."""
        if not sub.lifecycle_notification_url:
            raise ValueError("the subscription has no lifecycleNotificationUrl")
        body = {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": graph_offset_time(sub.expiration),
                    "tenantId": self.state.tenant_id,
                    "clientState": sub.client_state,
                    "lifecycleEvent": event,
                }
            ]
        }
        if event == "subscriptionRemoved":
            self.state.subscriptions.pop(sub.id, None)
        timeout = self.state.config.delivery_timeout_seconds
        status, error = await self._post(
            sub.lifecycle_notification_url, orjson.dumps(body), timeout
        )
        ok = 200 <= status < 300
        self.state.stats.lifecycle["sent" if ok else "failed"] += 1
        entry = {"at": time.time(), "kind": "lifecycle", "event": event, "status": status}
        self.log.append(entry | {"url": sub.lifecycle_notification_url, "error": error})
        return {"event": event, "status": status, "error": error, "delivered": ok}
