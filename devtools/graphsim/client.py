"""A typed, synchronous client for the simulator's control API (``/_sim/``).

Tests, ``make run``, chaos and benchmark scripts drive the simulator through this, never
through Graph routes, so they cannot disturb the counters the archiver is judged by.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import httpx

LifecycleEvent = Literal["reauthorizationRequired", "subscriptionRemoved", "missed"]


class SimError(RuntimeError):
    """The control API refused a request; ``status`` and the message say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"graphsim {status}: {message}")
        self.status = status


class SimClient:
    """``SimClient("http://127.0.0.1:8055")``; close it (or use ``with``) when done."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise SimError(response.status_code, message)
        return response.json()

    # ------------------------------------------------------------ records

    def create_record(
        self,
        id: str | None = None,
        *,
        sessions: int = 5,
        participants: int = 3,
        segments_per_session: int = 1,
        start: datetime | str | None = None,
        available_after_fetches: int = 0,
        available_after_minutes: int = 0,
        never_available: bool = False,
        notify: bool = True,
        duplicate_session_ids: bool = False,
        link_style: Literal["path", "metadata"] | None = None,
        bump_after_requests: int = 0,
    ) -> dict[str, Any]:
        """Create a record (version 1); returns ``{"id", "version"}``. ``link_style``: next
        links as resource paths or in the documentation's ``$metadata#`` form (default: by id,
        about half each). ``bump_after_requests``: Graph publishes version 2 after serving
        that many requests for the record (a version change in the middle of a fetch)."""
        body: dict[str, Any] = {
            "sessions": sessions,
            "participants": participants,
            "segments_per_session": segments_per_session,
            "available_after_fetches": available_after_fetches,
            "available_after_minutes": available_after_minutes,
            "never_available": never_available,
            "notify": notify,
            "duplicate_session_ids": duplicate_session_ids,
            "bump_after_requests": bump_after_requests,
        }
        if id is not None:
            body["id"] = id
        if link_style is not None:
            body["link_style"] = link_style
        if start is not None:
            body["start"] = start.isoformat() if isinstance(start, datetime) else start
        return dict(self._call("POST", "/_sim/records", body))

    def new_version(self, record_id: str, *, notify: bool = True) -> dict[str, Any]:
        """Publish the next version; returns ``{"id", "version"}``."""
        return dict(self._call("POST", f"/_sim/records/{record_id}/versions", {"notify": notify}))

    def expected(self, record_id: str) -> dict[str, Any]:
        """The document a correct archiver writes for the record's current version."""
        return dict(self._call("GET", f"/_sim/records/{record_id}/expected"))

    def record(self, record_id: str) -> dict[str, Any]:
        """``{id, version, startDateTime, sessions, participants, fetches, available}``."""
        return dict(self._call("GET", f"/_sim/records/{record_id}"))

    def records(self) -> list[dict[str, Any]]:
        """Every record: ``{id, version, startDateTime, sessions, participants, ...}``."""
        return list(self._call("GET", "/_sim/records"))

    # ------------------------------------------------------------ PSTN / Direct Routing logs

    def add_usage_rows(
        self,
        kind: Literal["pstn", "directrouting"],
        count: int,
        start: datetime | str,
        end: datetime | str,
        correlation_ids: list[str] | None = None,
        visible_after_hours: float = 0,
    ) -> list[str]:
        """Add ``count`` generated rows starting evenly over [start, end); returns their ids.
        ``visible_after_hours`` (0-48, at the simulator's time_scale): rows that come late."""
        body: dict[str, Any] = {
            "count": count,
            "visible_after_hours": visible_after_hours,
            "start": start.isoformat() if isinstance(start, datetime) else start,
            "end": end.isoformat() if isinstance(end, datetime) else end,
        }
        if correlation_ids is not None:
            body["correlation_ids"] = correlation_ids
        return list(self._call("POST", f"/_sim/usage/{kind}", body)["ids"])

    def add_usage_row_objects(
        self, kind: Literal["pstn", "directrouting"], rows: list[dict[str, Any]]
    ) -> None:
        """Add rows exactly as given (each needs ``id`` and ``startDateTime``)."""
        self._call("POST", f"/_sim/usage/{kind}", {"rows": rows})

    def usage_rows(self, kind: Literal["pstn", "directrouting"]) -> list[dict[str, Any]]:
        """Every row of that log, sorted by start time."""
        return list(self._call("GET", f"/_sim/usage/{kind}"))

    # ------------------------------------------------------------ counters, faults, config

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/stats"))

    def reset_stats(self) -> dict[str, Any]:
        return dict(self._call("POST", "/_sim/stats/reset"))

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/faults"))

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Partial update, e.g. ``set_faults(rate_429=0.2, retry_after=2)``,
        ``set_faults(throttle=True, record_limit=5)``, ``set_faults(script=["429", "drop"])``,
        ``set_faults(reset=True)``. Returns the whole configuration."""
        return dict(self._call("POST", "/_sim/faults", settings))

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/config"))

    def set_config(self, **settings: Any) -> dict[str, Any]:
        """Delivery/subscription knobs, e.g. ``validation_timeout_seconds``, ``max_attempts``,
        ``retry_base_seconds``, ``batch_window_ms``, ``max_batch``, ``subscription_quota``."""
        return dict(self._call("POST", "/_sim/config", settings))

    # ------------------------------------------------------------ notifications, subscriptions

    def pause_notifications(self, mode: Literal["drop", "hold"] = "drop") -> None:
        """``drop``: notifications are lost (missed); ``hold``: delivered on resume."""
        self._call("POST", "/_sim/notifications/pause", {"mode": mode})

    def resume_notifications(self) -> None:
        self._call("POST", "/_sim/notifications/resume")

    def notification_log(self) -> list[dict[str, Any]]:
        """Recent handshakes, notification POSTs and lifecycle events, oldest first."""
        return list(self._call("GET", "/_sim/notifications"))

    def subscriptions(self) -> list[dict[str, Any]]:
        """Live subscriptions as Graph shows them."""
        return list(self._call("GET", "/_sim/subscriptions"))

    def lifecycle(self, subscription_id: str, event: LifecycleEvent) -> dict[str, Any]:
        """Send a lifecycle event now; returns ``{"event", "status", "error", "delivered"}``."""
        return dict(
            self._call("POST", f"/_sim/subscriptions/{subscription_id}/lifecycle", {"event": event})
        )

    def remove_subscription(self, subscription_id: str) -> None:
        """Delete it silently, as Graph removes a callRecords subscription (no lifecycle event)."""
        self._call("POST", f"/_sim/subscriptions/{subscription_id}/remove", {})

    def expire_subscription(self, subscription_id: str) -> None:
        self._call("POST", f"/_sim/subscriptions/{subscription_id}/expire")

    def reset(self) -> None:
        """Records, subscriptions, counters, faults, settings: all back to empty/defaults."""
        self._call("POST", "/_sim/reset")

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_sim/health"))
