"""Outgoing HTTP: the validation handshake, change notifications and lifecycle events.

Follows learn.microsoft.com/graph/change-notifications-delivery-webhooks: notifications are
batched in a ``value`` array per notification URL (query string kept verbatim); a 2xx answer
within 3 seconds delivers them; anything else or no answer is retried with exponential
back-off for up to 4 hours, then dropped. An endpoint (a host) whose answers are slow (over
2,900 ms, timeouts included) for 10% of the last 10 minutes gets new notifications 10 minutes
late; at 15%, new notifications are dropped, for up to 10 minutes, and cannot be recovered.
Where the page's revisions differ, the stricter is modelled: the older revision's 3 s timeout,
2,900 ms, "reaches 10%", 10-minute delay and ">= 15%", per host; the current one says 10 s,
10 s, more than 10%, a 10-second delay and more than 15%.
Graph's durations run at ``time_scale`` (SimConfig); the 3-second timeout and the 2,900 ms
threshold are real time.
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
from devtools.graphsim.state import SimConfig, SimState, Subscription, utcnow

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


def lifecycle_notification(
    subscription_id: str,
    event: str,
    client_state: str | None,
    *,
    expires: str = "2030-06-12T10:00:00.000+00:00",
    tenant_id: str = EXAMPLE_TENANT,
) -> dict[str, Any]:
    """One lifecycle notification, as learn.microsoft.com/graph/change-notifications-lifecycle-events
    shows it: the simulator's lifecycle POSTs use it, and so do tests that play Graph."""
    return {
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": expires,
        "tenantId": tenant_id,
        "clientState": client_state,
        "lifecycleEvent": event,
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


class SlowMeter:
    """Per notification host (Graph throttles "the host associated with the notification URL"):
    the answers of the last slow window, slow or not, and the state their share puts the
    endpoint in (ok, delayed, dropped). The state is the share's, nothing latched: an endpoint
    leaves "drop" once its share is under 15% (the current page), which with no deliveries
    means once its slow answers age out of the window, "up to 10 minutes"."""

    OK, DELAYED, DROPPED = "ok", "delayed", "dropped"

    def __init__(self) -> None:
        self.answers: dict[str, deque[tuple[float, bool]]] = {}

    @staticmethod
    def _host(url: str) -> str:
        return str(URL(url).origin())

    def clear(self) -> None:
        self.answers.clear()

    def record(self, url: str, slow: bool, config: SimConfig) -> None:
        self.answers.setdefault(self._host(url), deque()).append((time.monotonic(), slow))

    def _share(self, url: str, config: SimConfig) -> float:
        answers = self.answers.get(self._host(url))
        if not answers:
            return 0.0
        horizon = time.monotonic() - config.scaled(config.slow_window_minutes * 60)
        while answers and answers[0][0] < horizon:
            answers.popleft()
        return sum(1 for _, slow in answers if slow) / len(answers) if answers else 0.0

    def state(self, url: str, config: SimConfig) -> str:
        # "reaches 10%" and "greater than or equal to 15%": the older revision's wording, the
        # stricter of the two (the current page says "more than").
        share = self._share(url, config)
        if share >= config.slow_drop_share:
            return self.DROPPED
        if share >= config.slow_delay_share:
            return self.DELAYED
        return self.OK


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
        self.slow = SlowMeter()

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
        self.slow.clear()

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
                config = self.state.config
                if self.slow.state(sub.notification_url, config) == SlowMeter.DROPPED:
                    self.state.stats.notifications["dropped_slow"] += 1  # lost for good
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
                late = self.slow.state(url, self.state.config) == SlowMeter.DELAYED
                if late:
                    self.state.stats.notifications["delayed_slow"] += len(items)
                for i in range(0, len(items), size):
                    task = asyncio.create_task(self._deliver(url, items[i : i + size], late))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _post(self, url: str, payload: bytes, limit: float) -> tuple[int, str | None]:
        """(status, error) of one POST; status 0 when there was no answer within ``limit``."""
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

    async def _deliver(self, url: str, items: list[_Pending], late: bool = False) -> None:
        config, counts = self.state.config, self.state.stats.notifications
        if late:  # a slow endpoint: new notifications come 10 minutes (scaled) late
            await asyncio.sleep(config.scaled(config.slow_delay_seconds))
        attempt = 1
        give_up_at = time.monotonic() + config.scaled(config.retry_hours * 3600)
        while True:
            now = utcnow()
            subs = self.state.subscriptions
            live = [p for p in items if (s := subs.get(p.subscription_id)) and s.live(now)]
            counts["dropped"] += len(items) - len(live)
            items = live
            if not items:
                return
            payload = orjson.dumps({"value": [p.body for p in items]})
            started = time.monotonic()
            status, error = await self._post(url, payload, config.delivery_timeout_seconds)
            slow = status == 0 and error is not None and error.startswith("timeout")
            slow = slow or (time.monotonic() - started) * 1000 > config.slow_answer_ms
            self.slow.record(url, slow, config)
            counts["posts"] += 1
            counts["slow_answers"] += int(slow)
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
            delay = config.retry_base_seconds * 2 ** min(attempt - 1, 30)
            left = give_up_at - time.monotonic()
            capped = config.max_attempts and attempt >= config.max_attempts
            if capped or left <= 0:
                counts["discarded"] += len(items)
                log.info("gave up on %d notifications to %s", len(items), url)
                return
            counts["retried"] += len(items)
            await asyncio.sleep(min(delay, left))  # the last try at the end of the 4 hours
            attempt += 1

    # ------------------------------------------------------------ lifecycle

    async def lifecycle(self, sub: Subscription, event: str) -> dict[str, Any]:
        """POST one lifecycle event to the subscription's lifecycleNotificationUrl (no retries);
        ``subscriptionRemoved`` then deletes the subscription."""
        if not sub.lifecycle_notification_url:
            raise ValueError("the subscription has no lifecycleNotificationUrl")
        item = lifecycle_notification(
            sub.id,
            event,
            sub.client_state,
            expires=graph_offset_time(sub.expiration),
            tenant_id=self.state.tenant_id,
        )
        body = {"value": [item]}
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
