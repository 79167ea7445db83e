"""The simulator's mutable world: records, subscriptions, counters, and their persistence.

Kept apart from the HTTP layer so the tenant generator, the control API and the Graph routes
all change it the same way. ``save``/``load`` let a restarted simulator keep its records and
subscriptions (like Graph, which does not forget a tenant when one front end restarts).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools.graphsim import records
from devtools.graphsim.records import TENANT_ID, RecordSpec, graph_time, parse_time


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Subscription:
    """A Graph v1.0 subscription, as the API shows it."""

    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    expiration: datetime
    client_state: str | None
    application_id: str
    creator_id: str

    def live(self, now: datetime) -> bool:
        return self.expiration > now

    def change_types(self) -> set[str]:
        return {c.strip().lower() for c in self.change_type.split(",")}

    def participant_filter(self) -> str | None:
        """The participant id of ``communications/callRecords?$filter=participants/any(...)``."""
        _, _, query = self.resource.partition("?")
        if not query:
            return None
        _, _, quoted = query.partition("'")
        return quoted.partition("'")[0] or None

    def to_graph(self, base_url: str, secret: bool = True) -> dict[str, Any]:
        """As Graph shows it. ``secret=False`` (every Graph route): clientState is not shown;
        the documentation does not promise it back, so a client must not rely on it (the
        control API shows it, for tests)."""
        return {
            "@odata.context": f"{base_url}/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state if secret else None,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": graph_time(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["expiration"] = self.expiration.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Subscription:
        data = dict(data)
        data["expiration"] = datetime.fromisoformat(data["expiration"])
        return cls(**data)


@dataclass
class SimConfig:
    """Delivery and subscription knobs (``POST /_sim/config``); defaults suit local tests."""

    validation_timeout_seconds: float = 10.0
    subscription_quota: int = 100
    batch_window_ms: int = 50
    max_batch: int = 50
    # Graph's HTTP client waits 3 s for a notification's answer; an answer over 2,900 ms is
    # slow (learn.microsoft.com/graph/change-notifications-delivery-webhooks, "Throttling", in
    # its older revision; the current one says 10 s for both: the stricter is modelled). Real
    # seconds, never scaled.
    delivery_timeout_seconds: float = 3.0
    slow_answer_ms: int = 2900
    # Graph's own durations (retries for 4 hours, the 10-minute slow window, the 10-minute
    # delay, up to 10 minutes of dropping) run at time_scale: 0.001 makes 4 hours 14.4 s. The
    # window's answers come in real time, so at 0.001 it holds the last 0.6 s of them: a test
    # of the shares sets time_scale (tests/unit/test_graphsim_slow.py).
    time_scale: float = 0.001
    retry_hours: float = 4.0
    retry_base_seconds: float = 0.5  # real seconds before the first retry, doubling after
    max_attempts: int = 0  # 0: retry until retry_hours have passed, as Graph does
    slow_window_minutes: float = 10.0
    slow_delay_share: float = 0.10  # at this share of slow answers: new ones delayed 10 min
    slow_drop_share: float = 0.15  # at this share: new notifications dropped (lost)
    # The older revision's "a delay of 10 minutes"; the current one says 10 seconds.
    slow_delay_seconds: float = 600.0
    # Graph documents only reauthorizationRequired for callRecords subscriptions
    # (learn.microsoft.com/graph/change-notifications-lifecycle-events): 0 refuses to send
    # subscriptionRemoved and missed for them; tests of the app's defensive handling set 1.
    undocumented_lifecycle_events: int = 0
    min_expiration_minutes: int = 45
    max_expiration_minutes: int = 4230
    participants_v2_available: int = 1  # 0: a national cloud without participants_v2
    # 0: a cloud where getDirectRoutingCalls is not served (treated as global-only; China
    # per the national cloud table of callrecords-callrecord-getdirectroutingcalls)
    direct_routing_available: int = 1

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown setting {key!r}; known: {sorted(asdict(self))}")
            current = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0")
            setattr(self, key, type(current)(value))
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be above 0")

    def scaled(self, seconds: float) -> float:
        """Real seconds for a duration of Graph's (``seconds`` at time_scale)."""
        return seconds * self.time_scale


class Stats:
    """Counters served by ``GET /_sim/stats``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.token_requests = 0
        self.requests: Counter[str] = Counter()
        self.responses: Counter[str] = Counter()
        self.responses_by_kind: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.faults: Counter[str] = Counter()
        self.notifications: Counter[str] = Counter()
        self.validations: Counter[str] = Counter()
        self.lifecycle: Counter[str] = Counter()
        self.subscription_changes: Counter[str] = Counter()  # created, deleted
        self.since = time.time()

    def response(self, kind: str, status: int | str) -> None:
        """Count one answer; ``status`` is the HTTP status or "dropped" (connection closed)."""
        self.responses[str(status)] += 1
        self.responses_by_kind[kind][str(status)] += 1

    def to_json(self) -> dict[str, Any]:
        notes = self.notifications
        return {
            "since": self.since,
            "token_requests": self.token_requests,
            "requests": dict(self.requests),
            "responses": dict(self.responses),
            "responses_by_kind": {k: dict(v) for k, v in self.responses_by_kind.items()},
            "faults": dict(self.faults),
            "notifications": {
                k: notes[k]
                for k in (
                    "queued",
                    "delivered",
                    "failed",
                    "retried",
                    "discarded",
                    "dropped",
                    "slow_answers",
                    "delayed_slow",
                    "dropped_slow",
                )
            }
            | {"posts": notes["posts"]},
            "validations": {"ok": self.validations["ok"], "failed": self.validations["failed"]},
            "lifecycle": {"sent": self.lifecycle["sent"], "failed": self.lifecycle["failed"]},
            "subscription_changes": {
                "created": self.subscription_changes["created"],
                "deleted": self.subscription_changes["deleted"],
            },
        }


class Availability:
    """Why a record is or is not served right now."""

    AVAILABLE = "available"
    UNKNOWN = "unknown"
    PENDING = "pending"
    NEVER = "never"
    EXPIRED = "expired"


@dataclass
class SimState:
    """Records, subscriptions and settings; one per simulator process."""

    seed: int | None = None
    tenant_id: str = TENANT_ID
    records: dict[str, RecordSpec] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    config: SimConfig = field(default_factory=SimConfig)
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.record_seed = self.seed if self.seed is not None else random.randrange(2**31)

    def new_id(self) -> str:
        """A fresh GUID from the seeded generator (skipping ones a restored state uses)."""
        while True:
            candidate = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            if candidate not in self.records and candidate not in self.subscriptions:
                return candidate

    # ------------------------------------------------------------ records

    def availability(self, spec: RecordSpec | None, now: datetime) -> str:
        if spec is None:
            return Availability.UNKNOWN
        if spec.never_available:
            return Availability.NEVER
        if spec.start_dt < now - records.RETENTION:
            return Availability.EXPIRED
        if spec.fetches < spec.available_after_fetches:
            return Availability.PENDING
        # An assumption, stricter than the pages: a notified record 404s for up to 150 minutes.
        # The FAQ (learn.microsoft.com/graph/callrecords-api-faq) says a record can take up to
        # 60 minutes to be available; the notification latency table
        # (learn.microsoft.com/graph/change-notifications-overview, "Latency") gives callRecord
        # notifications at most 150 minutes. The larger number, counted from the notification.
        publish_at = spec.created_at + self.config.scaled(spec.available_after_minutes * 60)
        if time.time() < publish_at:
            return Availability.PENDING
        return Availability.AVAILABLE

    def add_record(
        self,
        *,
        record_id: str | None,
        sessions: int,
        participants: int,
        segments_per_session: int = 1,
        start: datetime | None = None,
        available_after_fetches: int = 0,
        available_after_minutes: float = 0.0,
        never_available: bool = False,
        duplicate_session_ids: bool = False,
        link_style: str = "",
        bump_after_requests: int = 0,
    ) -> RecordSpec:
        rid = (record_id or self.new_id()).lower()
        if rid in self.records:
            raise KeyError(rid)
        now = utcnow()
        spec = records.new_spec(
            rid,
            seed=self.record_seed,
            start=start,
            now=now,
            sessions=sessions,
            participants=participants,
            segments_per_session=segments_per_session,
            duplicate_session_ids=duplicate_session_ids,
            available_after_fetches=available_after_fetches,
            never_available=never_available,
            created_at=time.time(),
        )
        spec.link_style = link_style
        spec.available_after_minutes = available_after_minutes
        spec.bump_after_requests = bump_after_requests
        self.records[rid] = spec
        return spec

    def sorted_records(self) -> list[RecordSpec]:
        """By (startDateTime, id): the order List callRecords pages through."""
        return sorted(self.records.values(), key=lambda s: (s.start_dt, s.id))

    # ------------------------------------------------------------ subscriptions

    def live_subscriptions(self, now: datetime | None = None) -> list[Subscription]:
        """Live ones; expired ones are removed, as Graph cleans them up."""
        now = now or utcnow()
        for sid in [s.id for s in self.subscriptions.values() if not s.live(now)]:
            del self.subscriptions[sid]
        return list(self.subscriptions.values())

    # ------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        data = {
            "record_seed": self.record_seed,
            "records": [s.to_json() for s in self.records.values()],
            "subscriptions": [s.to_json() for s in self.subscriptions.values()],
            "config": asdict(self.config),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    def load(self, path: Path) -> bool:
        if not path.exists():
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
        self.record_seed = int(data["record_seed"])
        self.records = {r["id"]: RecordSpec.from_json(r) for r in data["records"]}
        self.subscriptions = {s["id"]: Subscription.from_json(s) for s in data["subscriptions"]}
        self.config = SimConfig(**data["config"])
        return True


_ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,7})?)?(Z|[+-]\d\d:\d\d)$", re.I)


def parse_expiration(value: object) -> datetime:
    """An ISO 8601 date and time with Z or an offset; a bare local time is refused."""
    if not isinstance(value, str) or not _ZONED.match(value.strip()):
        raise ValueError("expected an ISO 8601 date and time with Z or an offset")
    return parse_time(value)
