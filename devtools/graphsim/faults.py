"""Fault injection and the documented callRecords throttle, for the Graph read routes only.

A seeded generator decides random faults, so a chaos run can be replayed; ``script`` queues
exact faults for the next requests, for tests that need one 429 and nothing else.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

USAGE_KINDS = ("pstn_calls", "direct_routing_calls")  # the simulator's route kinds
FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "403",
    "drop",
    "drop_partial",
    "drop_silent",
    "ok",
)
# A Graph incident: every read answered with one of these (learn.microsoft.com/graph/errors
# lists 500, 502, 503 and 504 as server-side failures to retry later).
OUTAGE_STATUSES = (0, 500, 502, 503, 504)


@dataclass
class FaultConfig:
    """Rates are probabilities per request; the throttle limits are concepts/throttling-limits.md."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    retry_after: int = 1
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    throttle: bool = False
    app_limit: int = 1500
    record_limit: int = 40
    list_limit: int = 40
    window_seconds: float = 20.0
    # PSTN / Direct Routing logs (throttling-limits.md, "Cloud communication service limits"):
    # 200 requests / 60 s per app per tenant, 50 / 60 s per collection (each log).
    usage_app_limit: int = 200
    usage_collection_limit: int = 50
    usage_window_seconds: float = 60.0
    # Graph's limits for one call record, the stricter revision of
    # learn.microsoft.com/graph/throttling-limits ("Cloud communication service limits"):
    # 10 requests / 20 s for the first page and 50 / 5 min for the following pages. Always
    # enforced (record_limits=false turns them off); the periods can be scaled down for tests.
    record_limits: bool = True
    record_first_limit: int = 10
    record_first_seconds: float = 20.0
    record_next_limit: int = 50
    record_next_seconds: float = 300.0
    outage: int = 0  # while non-zero, every Graph read is answered with this status
    # The app role missing (or not yet in the identity's tokens): every Graph read is 403
    # Authorization_RequestDenied, as for an app without CallRecords.Read.All.
    forbidden: bool = False
    # A new app role reaches a managed identity's tokens only when the cached token is
    # renewed: "around 24 hours", with no documented maximum
    # (learn.microsoft.com/entra/identity/managed-identities-azure-resources/
    # managed-identity-best-practice-recommendations, "Limitation of using managed identities for
    # authorization": a cache per resource URI for around 24 hours). ``grant_role`` with this many Graph hours
    # answers every read 403 until they pass, at SimConfig.time_scale (0.001: 24 h -> 86.4 s).
    role_delay_hours: float = 24.0
    script: list[str] = field(default_factory=list)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update; ValueError names the first bad key or value."""
        known = {f.name: f for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}; known: {sorted(known)}")
            current = getattr(self, key)
            if key == "script":
                if not isinstance(value, list) or any(str(v) not in FAULT_KINDS for v in value):
                    raise ValueError(f"script must be a list of {FAULT_KINDS}")
                value = [str(v) for v in value]
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
            elif isinstance(current, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{key} must be a number >= 0")
                if key.startswith("rate_") and value > 1:
                    raise ValueError(f"{key} is a probability between 0 and 1")
                value = type(current)(value)
            setattr(self, key, value)
        if self.outage not in OUTAGE_STATUSES:
            raise ValueError(f"outage must be one of {OUTAGE_STATUSES}")
        if self.rate_429 + self.rate_503 + self.rate_drop > 1:
            raise ValueError("rate_429 + rate_503 + rate_drop must not exceed 1")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) answering: status 429/503, or drop the connection."""

    kind: str  # "429" | "503" | "drop_partial" | "drop_silent" | "throttle_app" | ...
    status: int = 0
    retry_after: float = 0


class SlidingWindow:
    """Timestamps of admitted requests within the last ``window`` seconds."""

    def __init__(self) -> None:
        self.hits: deque[float] = deque()

    def retry_after(self, now: float, limit: int, window: float) -> float:
        """0 if one more request fits, else seconds until one does (whole seconds, as Graph's
        Retry-After, unless the window itself is shorter than a second: scaled-down tests)."""
        while self.hits and self.hits[0] <= now - window:
            self.hits.popleft()
        if len(self.hits) < limit:
            return 0
        wait = self.hits[len(self.hits) - limit] + window - now
        return max(1, math.ceil(wait)) if window >= 1 else max(0.01, wait)


class FaultInjector:
    """Decides, per Graph read request, whether to throttle, fail, drop or delay it."""

    def __init__(self, seed: int | None) -> None:
        self.config = FaultConfig()
        self.rng = random.Random(seed)
        self.app = SlidingWindow()
        self.list = SlidingWindow()
        self.records: dict[str, SlidingWindow] = {}
        self.usage_app = SlidingWindow()
        self.usage_logs: dict[str, SlidingWindow] = {}
        self.record_pages: dict[tuple[str, bool], SlidingWindow] = {}
        self.forbidden_until = 0.0  # monotonic: the granted role not yet in the tokens

    def refusal(self) -> Fault | None:
        """A 403 while the app role is missing, or granted but not yet in the tokens."""
        if self.config.forbidden or time.monotonic() < self.forbidden_until:
            return self._make("403")
        return None

    def grant_role(self, real_delay: float) -> None:
        """The app role was just granted: reads stay 403 for ``real_delay`` real seconds."""
        self.config.forbidden = False
        self.forbidden_until = time.monotonic() + real_delay

    def reset(self) -> None:
        self.config = FaultConfig()
        self.app, self.list, self.records = SlidingWindow(), SlidingWindow(), {}
        self.usage_app, self.usage_logs = SlidingWindow(), {}
        self.record_pages = {}
        self.forbidden_until = 0.0

    def _record_limit(self, record_id: str, following: bool) -> Fault | None:
        """Graph's per-record windows: first pages (no $skiptoken) and following pages."""
        c, now = self.config, time.monotonic()
        if len(self.record_pages) > 20_000:
            self.record_pages = {k: w for k, w in self.record_pages.items() if w.hits}
        window = self.record_pages.setdefault((record_id, following), SlidingWindow())
        limit, period = (
            (c.record_next_limit, c.record_next_seconds)
            if following
            else (c.record_first_limit, c.record_first_seconds)
        )
        wait = window.retry_after(now, limit, period)
        if wait:
            return Fault("throttle_record", 429, wait)
        window.hits.append(now)
        return None

    def latency(self) -> float:
        """Seconds to wait before answering."""
        c = self.config
        if not c.latency_ms and not c.latency_jitter_ms:
            return 0.0
        return (c.latency_ms + self.rng.uniform(0, c.latency_jitter_ms)) / 1000

    def _throttle(self, kind: str, record_id: str | None) -> Fault | None:
        c, now = self.config, time.monotonic()
        windows: list[tuple[str, SlidingWindow, int]] = [("throttle_app", self.app, c.app_limit)]
        period = c.window_seconds
        if kind in USAGE_KINDS:  # the usage logs have limits of their own
            period = c.usage_window_seconds
            log = self.usage_logs.setdefault(kind, SlidingWindow())
            windows = [
                ("throttle_usage_app", self.usage_app, c.usage_app_limit),
                ("throttle_usage_collection", log, c.usage_collection_limit),
            ]
        elif kind == "list":
            windows.append(("throttle_list", self.list, c.list_limit))
        elif record_id:
            if len(self.records) > 10_000:  # forget idle records
                self.records = {k: w for k, w in self.records.items() if w.hits}
            window = self.records.setdefault(record_id, SlidingWindow())
            windows.append(("throttle_record", window, c.record_limit))
        for name, window, limit in windows:
            wait = window.retry_after(now, limit, period)
            if wait:
                return Fault(name, 429, wait)
        for _, window, _ in windows:
            window.hits.append(now)
        return None

    def decide(self, kind: str, record_id: str | None, following: bool = False) -> Fault | None:
        """None: answer normally. Scripted faults first, then the throttles, then the rates."""
        c = self.config
        if c.script:
            scripted = c.script.pop(0)
            if scripted != "ok":
                return self._make(scripted)
        refused = self.refusal()
        if refused:
            return refused
        if c.outage:
            return Fault(f"outage_{c.outage}", c.outage)
        # One call record's limits (learn.microsoft.com/graph/throttling-limits, "Cloud
        # communication service limits": per call record): not the list, nor the PSTN / Direct
        # Routing functions, whose route carries the function call where a record id would be
        # and whose limits are the page's per-app and per-collection ones.
        if c.record_limits and record_id and kind != "list" and kind not in USAGE_KINDS:
            fault = self._record_limit(record_id, following)
            if fault:
                return fault
        if c.throttle:
            fault = self._throttle(kind, record_id)
            if fault:
                return fault
        roll = self.rng.random()
        if roll < c.rate_429:
            return self._make("429")
        if roll < c.rate_429 + c.rate_503:
            return self._make("503")
        if roll < c.rate_429 + c.rate_503 + c.rate_drop:
            return self._make("drop")
        return None

    def _make(self, kind: str) -> Fault:
        if kind == "429":
            return Fault("429", 429, self.config.retry_after)
        if kind == "503":
            return Fault("503", 503, self.config.retry_after)
        if kind == "403":  # what Graph answers an app without CallRecords.Read.All
            return Fault("403", 403)
        if kind in ("500", "502", "504"):
            return Fault(kind, int(kind))
        if kind == "drop":
            kind = self.rng.choice(["drop_partial", "drop_silent"])
        return Fault(kind)
