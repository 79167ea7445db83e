"""The control API, ``/_sim/``: how tests and scripts drive and inspect the simulator.

No auth and plain JSON in and out. It never goes through the Graph routes, so driving the
simulator does not disturb the request counters or the throttle windows the app is judged by.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiohttp import web

from devtools.graphsim.notifier import LIFECYCLE_EVENTS
from devtools.graphsim.records import LINK_STYLES, RecordSpec, parse_time
from devtools.graphsim.server import GUID, Simulator
from devtools.graphsim.state import Subscription, utcnow


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": {"code": "BadRequest", "message": message}}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _int(data: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}")
    return value


def _bool(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


class Control:
    """``/_sim/``: drive and inspect the simulator (no auth, JSON in and out)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/health", self.health),
            web.post("/_sim/records", self.create_record),
            web.get("/_sim/records", self.list_records),
            web.get("/_sim/records/{id}", self.get_record),
            web.post("/_sim/records/{id}/versions", self.new_version),
            web.get("/_sim/records/{id}/expected", self.expected),
            web.get("/_sim/stats", self.stats),
            web.post("/_sim/stats/reset", self.reset_stats),
            web.get("/_sim/faults", self.get_faults),
            web.post("/_sim/faults", self.set_faults),
            web.get("/_sim/config", self.get_config),
            web.post("/_sim/config", self.set_config),
            web.post("/_sim/notifications/pause", self.pause),
            web.post("/_sim/notifications/resume", self.resume),
            web.get("/_sim/notifications", self.notification_log),
            web.get("/_sim/subscriptions", self.subscriptions),
            web.post("/_sim/subscriptions/{id}/lifecycle", self.lifecycle),
            web.post("/_sim/subscriptions/{id}/expire", self.expire),
            web.post("/_sim/subscriptions/{id}/remove", self.remove),
            web.post("/_sim/reset", self.reset),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "base_url": self.sim.base_url})

    def _summary(self, spec: RecordSpec) -> dict[str, Any]:
        return {
            "id": spec.id,
            "version": spec.version,
            "startDateTime": spec.start,
            "sessions": spec.total_sessions,
            "participants": spec.total_participants,
            "fetches": spec.fetches,
            "available": self.sim.state.availability(spec, utcnow()),
        }

    def _spec(self, request: web.Request) -> RecordSpec:
        spec = self.sim.state.records.get(request.match_info["id"].lower())
        if spec is None:
            raise web.HTTPNotFound(
                text=orjson.dumps(
                    {"error": {"code": "NotFound", "message": "no such record"}}
                ).decode(),
                content_type="application/json",
            )
        return spec

    async def create_record(self, request: web.Request) -> web.Response:
        try:
            data = await _body(request)
            rid = data.get("id")
            if rid is not None and (not isinstance(rid, str) or not GUID.match(rid)):
                raise ValueError("id must be a GUID")
            start = data.get("start")
            options = {
                "record_id": rid,
                "sessions": _int(data, "sessions", 5, 1, 1_000_000),
                "participants": _int(data, "participants", 3, 1, 1_000_000),
                "segments_per_session": _int(data, "segments_per_session", 1, 1, 1000),
                "start": parse_time(start) if isinstance(start, str) else None,
                "available_after_fetches": _int(data, "available_after_fetches", 0, 0, 1_000_000),
                # 150: the latency table's maximum for callRecord notifications
                # (change-notifications-overview); the FAQ's availability is 60 (state.py)
                "available_after_minutes": _int(data, "available_after_minutes", 0, 0, 150),
                "never_available": _bool(data, "never_available", False),
                "duplicate_session_ids": _bool(data, "duplicate_session_ids", False),
                "link_style": str(data.get("link_style") or ""),
                "bump_after_requests": _int(data, "bump_after_requests", 0, 0, 1_000_000),
            }
            if options["link_style"] not in ("", *LINK_STYLES):
                raise ValueError(f"link_style must be one of {LINK_STYLES}")
            if start is not None and not isinstance(start, str):
                raise ValueError("start must be an ISO 8601 string")
            notify = _bool(data, "notify", True)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        try:
            spec = self.sim.create_record(notify=notify, **options)
        except KeyError:
            return _bad(f"record {rid} already exists", 409)
        return web.json_response({"id": spec.id, "version": spec.version}, status=201)

    async def list_records(self, request: web.Request) -> web.Response:
        return web.json_response([self._summary(s) for s in self.sim.state.sorted_records()])

    async def get_record(self, request: web.Request) -> web.Response:
        return web.json_response(self._summary(self._spec(request)))

    async def new_version(self, request: web.Request) -> web.Response:
        spec = self._spec(request)
        try:
            notify = _bool(await _body(request), "notify", True)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        self.sim.new_version(spec.id, notify=notify)
        return web.json_response({"id": spec.id, "version": spec.version})

    async def expected(self, request: web.Request) -> web.Response:
        doc = self.sim.expected(self._spec(request))
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.state.stats.to_json())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.sim.state.stats.reset()
        return web.json_response(self.sim.state.stats.to_json())

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim.faults.config.to_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            data = await _body(request)
            if data.pop("reset", False):
                self.sim.faults.reset()
            # A role granted now reaches the managed identity's tokens only after up to 24 h
            # (learn.microsoft.com/entra/identity/managed-identities-azure-resources/
            # managed-identity-best-practice-recommendations): 403 until then, scaled.
            grant = data.pop("grant_role", False)
            self.sim.faults.config.update(data)
            if grant:
                hours = self.sim.faults.config.role_delay_hours
                self.sim.faults.grant_role(self.sim.state.config.scaled(hours * 3600))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        return web.json_response(self.sim.faults.config.to_json())

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(vars(self.sim.state.config))

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            self.sim.state.config.update(await _body(request))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        return web.json_response(vars(self.sim.state.config))

    async def pause(self, request: web.Request) -> web.Response:
        try:
            mode = (await _body(request)).get("mode", "drop")
            if mode not in ("drop", "hold"):
                raise ValueError("mode must be 'drop' (lost, like missed notifications) or 'hold'")
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        self.sim.notifier.pause(hold=mode == "hold")
        return web.json_response({"paused": True, "mode": mode})

    async def resume(self, request: web.Request) -> web.Response:
        self.sim.notifier.resume()
        return web.json_response({"paused": False})

    async def notification_log(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.sim.notifier.log))

    async def subscriptions(self, request: web.Request) -> web.Response:
        base = self.sim.base_url
        return web.json_response([s.to_graph(base) for s in self.sim.state.live_subscriptions()])

    def _sub(self, request: web.Request) -> Subscription | None:
        sub = self.sim.state.subscriptions.get(request.match_info["id"])
        return sub if sub and sub.live(utcnow()) else None

    async def lifecycle(self, request: web.Request) -> web.Response:
        sub = self._sub(request)
        if sub is None:
            return _bad("no such live subscription", 404)
        try:
            event = (await _body(request)).get("event")
            if event not in LIFECYCLE_EVENTS:
                raise ValueError(f"event must be one of {LIFECYCLE_EVENTS}")
            undocumented = event != "reauthorizationRequired"
            callrecords = sub.resource.strip("/").lower().startswith("communications/callrecords")
            if (
                undocumented
                and callrecords
                and not self.sim.state.config.undocumented_lifecycle_events
            ):
                # learn.microsoft.com/graph/change-notifications-lifecycle-events: only
                # reauthorizationRequired is sent for callRecords; a removed subscription just
                # stops (POST .../remove), and missed notifications are never announced.
                raise ValueError(
                    f"Graph does not send {event} for callRecords subscriptions "
                    "(set undocumented_lifecycle_events=1 to test a client's defences)"
                )
            result = await self.sim.notifier.lifecycle(sub, event)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _bad(str(exc))
        return web.json_response(result)

    async def expire(self, request: web.Request) -> web.Response:
        sub = self._sub(request)
        if sub is None:
            return _bad("no such live subscription", 404)
        sub.expiration = utcnow()
        self.sim.state.live_subscriptions()
        return web.json_response({"id": sub.id, "expired": True})

    async def remove(self, request: web.Request) -> web.Response:
        """Graph removes a subscription without a word (callRecords get no subscriptionRemoved)."""
        sub = self._sub(request)
        if sub is None:
            return _bad("no such live subscription", 404)
        self.sim.state.subscriptions.pop(sub.id, None)
        return web.json_response({"id": sub.id, "removed": True})

    async def reset(self, request: web.Request) -> web.Response:
        state = self.sim.state
        state.records.clear()
        state.subscriptions.clear()
        self.sim.usage.clear()
        state.stats.reset()
        state.config = dataclasses.replace(self.sim.startup_config)
        self.sim.faults.reset()
        self.sim.notifier.clear()
        return web.json_response({"reset": True})
