"""The simulated tenant and its handlers for the MI token endpoint and the Graph v1.0 routes.

Graph routes follow the documented behaviour (devtools/graphsim/README.md cites the pages),
not what is convenient for a client: bearer tokens are checked, errors use Graph's ``{"error": {...}}`` shape, pages are
60 sessions / 130 participants / 60 list items with absolute next links whose skiptokens
cannot be forged, records 404 until published and after 30 days, subscriptions run the
validation handshake and obey the lifetime, quota and duplicate rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from devtools.graphsim import records, usage
from devtools.graphsim.faults import Fault, FaultInjector
from devtools.graphsim.notifier import Notifier
from devtools.graphsim.odata import (
    CallRecordFilter,
    ODataError,
    SkipTokens,
    parse_expand,
    parse_filter,
)
from devtools.graphsim.records import RecordSpec, context
from devtools.graphsim.state import (
    Availability,
    SimState,
    Subscription,
    parse_expiration,
    utcnow,
)
from devtools.graphsim.tokens import Token, TokenIssuer

log = logging.getLogger("graphsim")

SESSIONS_PAGE = 60
PARTICIPANTS_PAGE = 130
LIST_PAGE = 60
GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
READ_KINDS = (
    "record",
    "sessions_page",
    "participants_page",
    "list",
    *usage.ROUTE_KINDS.values(),
)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_KEY_FORM = re.compile(r"(callRecords)\('([^'/]*)'\)", re.IGNORECASE)
# A few lines of Graph's CSDL: what a client gets when it follows a "$metadata#..." next link
# verbatim (the fragment never reaches the server).
METADATA_XML = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
    b'<edmx:DataServices><Schema Namespace="microsoft.graph.callRecords" '
    b'xmlns="http://docs.oasis-open.org/odata/ns/edm"><EntityType Name="callRecord">'
    b'<Key><PropertyRef Name="id"/></Key></EntityType></Schema></edmx:DataServices></edmx:Edmx>'
)
_RESOURCE = re.compile(
    r"^communications/callRecords(\?\$filter=participants(?:_v2)?/any\((\w+):\2/id eq '[^']+'\))?$",
    re.IGNORECASE,
)


class GraphError(Exception):
    """Answered as ``{"error": {"code", "message", "innerError"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Settings:
    """Process settings from the command line."""

    identity_header: str = "local-simulator"
    token_lifetime: int = 3600
    seed: int | None = None
    secret: bytes = b""
    state_file: Path | None = None
    base_url: str = ""
    subscription_quota: int | None = None
    validation_timeout: float | None = None


Handler = Callable[[web.Request, "Route"], Awaitable[web.StreamResponse]]


@dataclass
class Route:
    kind: str
    record_id: str | None = None
    subscription_id: str | None = None


class Simulator:
    """One simulated tenant: state, notifier, faults, tokens, and the aiohttp app around them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = SimState(seed=settings.seed)
        self.faults = FaultInjector(settings.seed)
        self.tokens = TokenIssuer(settings.secret, settings.token_lifetime)
        self.skiptokens = SkipTokens(settings.secret)
        self.notifier = Notifier(self.state)
        self.usage = usage.UsageLogs(self, settings.seed)  # getPstnCalls, getDirectRoutingCalls
        self.base_url = settings.base_url.rstrip("/")
        if settings.subscription_quota is not None:
            self.state.config.subscription_quota = settings.subscription_quota
        if settings.validation_timeout is not None:
            self.state.config.validation_timeout_seconds = settings.validation_timeout
        self.startup_config = dataclasses.replace(self.state.config)
        if settings.state_file and self.state.load(settings.state_file):
            log.info("loaded %d records from %s", len(self.state.records), settings.state_file)

    # ------------------------------------------------------------ shared operations

    def create_record(self, notify: bool = True, **options: Any) -> RecordSpec:
        spec = self.state.add_record(**options)
        if notify:
            self.notifier.record_changed(spec, created=True)
        return spec

    def new_version(self, record_id: str, notify: bool = True) -> RecordSpec:
        spec = self.state.records[record_id]
        records.bump_version(spec, utcnow())
        if notify:
            self.notifier.record_changed(spec, created=False)
        return spec

    def expected(self, spec: RecordSpec) -> dict[str, Any]:
        """The complete document a correct archiver writes for the record's current version.

        Merge rule: take the top-level object of ``GET .../callRecords/{id}?$expand=sessions(
        $expand=segments)`` exactly as served (including ``@odata.context``,
        ``organizer_v2@odata.context``, ``participants_v2@odata.context`` and
        ``sessions@odata.context``); set ``sessions`` to the concatenation, in page order, of
        the first page's ``sessions`` and the ``value`` of every page reached through
        ``sessions@odata.nextLink`` (each session with its ``segments``); set
        ``participants_v2`` to the concatenation of the ``value`` of every page of
        ``GET .../callRecords/{id}/participants_v2``; drop every ``*@odata.nextLink`` key.
        Page annotations (``@odata.context`` of the page responses) are not part of it.
        """
        exp = parse_expand("sessions($expand=segments)")
        doc = self._record_document(spec, exp, page_size=spec.total_sessions + 1)
        doc.pop("sessions@odata.nextLink", None)
        doc["participants_v2"] = records.participants_slice(spec, 0, spec.total_participants)
        return doc

    # ------------------------------------------------------------ responses

    def graph_json(self, data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
        hdrs = {"Content-Type": GRAPH_JSON, **(headers or {})}
        return web.Response(body=orjson.dumps(data), status=status, headers=hdrs)

    def graph_error(self, err: GraphError, request_id: str, client_request_id: str) -> web.Response:
        body = {
            "error": {
                "code": err.code,
                "message": err.message,
                "innerError": {
                    "date": utcnow().strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                },
            }
        }
        return self.graph_json(body, err.status, err.headers)

    # ------------------------------------------------------------ token endpoint

    async def msi_token(self, request: web.Request) -> web.Response:
        """App Service managed identity protocol, api-version 2019-08-01 (what MSAL sends)."""
        self.state.stats.token_requests += 1
        status, body = self._issue_token(request)
        self.state.stats.response("token", status)
        return web.json_response(body, status=status)

    def _issue_token(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        if request.headers.get("X-IDENTITY-HEADER") != self.settings.identity_header:
            return 401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong."}
        query = request.query
        if query.get("api-version") != "2019-08-01":
            return 400, {"statusCode": 400, "message": "api-version must be 2019-08-01."}
        resource = query.get("resource", "").strip()
        if not resource:
            return 400, {"statusCode": 400, "message": "resource is required."}
        client_id = query.get("client_id") or query.get("object_id") or query.get("mi_res_id")
        token = self.tokens.issue(resource, client_id)
        return 200, {
            "access_token": token.value,
            "expires_on": str(token.expires_on),
            "resource": token.resource,
            "token_type": "Bearer",
            "client_id": token.client_id,
        }

    # ------------------------------------------------------------ Graph entry point

    def _route(self, method: str, tail: str) -> tuple[Route, Handler]:
        # OData addresses an entity by key as callRecords('{id}') as well as callRecords/{id}
        # (the documentation's context URLs and next links use the key form).
        path = _KEY_FORM.sub(r"\1/\2", tail.strip("/"))
        low = path.lower()
        parts = path.split("/")
        found = self.usage.route(method, path)
        if found:
            return found
        if low == "$metadata":
            return self._only(method, "GET", Route("metadata"), self.metadata)
        if low == "communications/callrecords":
            return self._only(method, "GET", Route("list"), self.list_records)
        if low.startswith("communications/callrecords/") and len(parts) in (3, 4):
            rid = parts[2].lower()
            if len(parts) == 3:
                return self._only(method, "GET", Route("record", rid), self.get_record)
            sub = parts[3].lower()
            if sub == "sessions":
                return self._only(method, "GET", Route("sessions_page", rid), self.sessions_page)
            if sub == "participants_v2":
                route = Route("participants_page", rid)
                return self._only(method, "GET", route, self.participants_page)
        if low == "subscriptions":
            route = Route("subscriptions")
            if method == "POST":
                return route, self.create_subscription
            return self._only(method, "GET", route, self.list_subscriptions)
        if low.startswith("subscriptions/") and len(parts) in (2, 3):
            route = Route("subscriptions", subscription_id=parts[1])
            if len(parts) == 3 and parts[2].lower() == "reauthorize":
                return self._only(method, "POST", route, self.reauthorize_subscription)
            if len(parts) == 2:
                handlers = {
                    "GET": self.get_subscription,
                    "PATCH": self.update_subscription,
                    "DELETE": self.delete_subscription,
                }
                if method in handlers:
                    return route, handlers[method]
                raise GraphError(405, "Request_BadRequest", f"{method} is not supported here.")
        raise GraphError(
            400, "BadRequest", f"Resource not found for the segment '{parts[-1][:80]}'."
        )

    @staticmethod
    def _only(method: str, allowed: str, route: Route, handler: Handler) -> tuple[Route, Handler]:
        if method != allowed:
            raise GraphError(405, "Request_BadRequest", f"{method} is not supported here.")
        return route, handler

    async def graph_entry(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id", "")[:100] or request_id
        kind = "other"
        try:
            route, handler = self._route(request.method, request.match_info["tail"])
            kind = route.kind
            self.state.stats.requests[kind] += 1
            request["token"] = self._authenticate(request)
            if request.method in ("POST", "PATCH") and kind == "subscriptions":
                # Creating, renewing and reauthorizing a callRecords subscription needs the
                # same CallRecords.Read.All application role as reading the records
                # (learn.microsoft.com/graph/api/subscription-post-subscriptions, Permissions:
                # callRecord): refused while the role is missing or not yet in the token.
                refused = self.faults.refusal()
                if refused:
                    self.state.stats.faults[refused.kind] += 1
                    raise self._fault_error(refused)
            fault = None
            if kind in READ_KINDS:
                following = any(k.lower() == "$skiptoken" for k in request.query)
                fault = self.faults.decide(kind, route.record_id, following)
                delay = self.faults.latency()
                if delay:
                    self.state.stats.faults["latency"] += 1
                    await asyncio.sleep(delay)
                if fault:
                    self.state.stats.faults[fault.kind] += 1
                    if fault.status:
                        raise self._fault_error(fault)
                    if fault.kind == "drop_silent":
                        return self._drop(request, kind)
            response = await handler(request, route)
            if kind in READ_KINDS and route.record_id:
                self._count_request(route.record_id)
            if fault and fault.kind == "drop_partial":
                return await self._drop_partial(request, response, kind)
        except GraphError as err:
            if kind == "other":
                self.state.stats.requests[kind] += 1
            response = self.graph_error(err, request_id, client_request_id)
        response.headers["request-id"] = request_id
        response.headers["client-request-id"] = client_request_id
        self.state.stats.response(kind, response.status)
        return response

    def _count_request(self, record_id: str) -> None:
        """Count a served request for the record; after the k-th (``bump_after_requests``)
        Graph publishes the next version, as it may while a large meeting is being fetched."""
        spec = self.state.records.get(record_id)
        if spec is None:
            return
        spec.requests += 1
        if spec.bump_after_requests and spec.requests == spec.bump_after_requests:
            self.new_version(spec.id, notify=False)

    def _fault_error(self, fault: Fault) -> GraphError:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        if fault.status == 429:
            message = "Too many requests. Please retry after the interval in Retry-After."
            if fault.kind.startswith("throttle_"):
                scope = fault.kind.removeprefix("throttle_")
                message = f"Application is over its {scope} request limit. {message}"
            return GraphError(429, "TooManyRequests", message, headers)
        if fault.status == 403:
            return GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
                headers,
            )
        if fault.status in (500, 502, 504):  # learn.microsoft.com/graph/errors
            codes = {500: "generalException", 502: "badGateway", 504: "gatewayTimeout"}
            return GraphError(fault.status, codes[fault.status], "The request failed.", headers)
        return GraphError(503, "serviceNotAvailable", "The service is unavailable.", headers)

    def _drop(self, request: web.Request, kind: str) -> web.Response:
        """Close the connection without answering."""
        self.state.stats.response(kind, "dropped")
        if request.transport:
            request.transport.close()
        return web.Response(status=200)

    async def _drop_partial(
        self, request: web.Request, response: web.StreamResponse, kind: str
    ) -> web.StreamResponse:
        """Send the headers and part of the body, then close the connection."""
        body = response.body if isinstance(response, web.Response) else b""
        payload = body if isinstance(body, bytes) else b""
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(payload)
        await stream.prepare(request)
        await stream.write(payload[: max(1, len(payload) // 2)])
        self.state.stats.response(kind, "dropped")
        if request.transport:
            request.transport.close()
        return stream

    def _authenticate(self, request: web.Request) -> Token:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if scheme.lower() != "bearer" or not value.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Bearer access token expected.")
        token, why = self.tokens.check(value.strip())
        if token is None:
            raise GraphError(401, "InvalidAuthenticationToken", why)
        return token

    # ------------------------------------------------------------ callRecords

    @staticmethod
    def _options(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
        """The $-options of the query; Graph rejects unknown or unsupported ones with 400."""
        options = {}
        for key, value in request.query.items():
            if not key.startswith("$"):
                continue
            if key.lower() not in allowed:
                raise GraphError(
                    400, "BadRequest", f"Query option '{key}' is not supported by this resource."
                )
            options[key.lower()] = value
        return options

    @staticmethod
    def _page_size(request: web.Request, maximum: int) -> int:
        prefer = request.headers.get("Prefer", "")
        match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer, re.IGNORECASE)
        if not match:
            return maximum
        return max(1, min(int(match.group(1)), maximum))

    def _record(self, route: Route, count_fetch: bool) -> RecordSpec:
        """The record if Graph would serve it now; 404 otherwise (unknown, not yet published,
        never published, older than 30 days). Only record GETs count as fetches."""
        rid = route.record_id or ""
        spec = self.state.records.get(rid) if GUID.match(rid) else None
        availability = self.state.availability(spec, utcnow())
        if spec is not None and count_fetch:
            spec.fetches += 1
        if spec is None or availability != Availability.AVAILABLE:
            raise GraphError(404, "NotFound", f"The requested resource '{rid[:40]}' was not found.")
        return spec

    def _record_document(self, spec: RecordSpec, exp: Any, page_size: int) -> dict[str, Any]:
        base = self.base_url
        fragment = exp.context_fragment()
        doc = records.record_top(spec, base, context(base, fragment) if fragment else None)
        prefix = f"communications/callRecords('{spec.id}')"
        if exp.sessions:
            suffix = "sessions(segments())" if exp.segments else "sessions"
            doc["sessions@odata.context"] = context(base, f"{prefix}/{suffix}")
            doc["sessions"] = records.sessions_slice(spec, base, 0, page_size, exp.segments)
            if spec.total_sessions > page_size:
                doc["sessions@odata.nextLink"] = self._sessions_link(
                    spec.id, page_size, exp.segments, page_size
                )
        if exp.participants:
            doc["participants_v2"] = records.participants_slice(spec, 0, PARTICIPANTS_PAGE)
            if spec.total_participants > PARTICIPANTS_PAGE:
                doc["participants_v2@odata.nextLink"] = self._participants_link(
                    spec.id, PARTICIPANTS_PAGE, PARTICIPANTS_PAGE
                )
        return doc

    def _link(self, rid: str, tail: str) -> str:
        """A next link in one of the two forms Graph's pages show.

        The documentation's examples (learn.microsoft.com/graph/api/callrecords-callrecord-get,
        .../callrecords-callrecord-list-sessions, .../callrecords-callrecord-list-participants_v2)
        print next links as context URLs, ``{root}/v1.0/$metadata#communications/callRecords(
        '{id}')/sessions?$expand=segments&$skiptoken=...``; no live link has been published, so
        some records (``link_style``) get that form and the others the plain resource path.
        """
        spec = self.state.records.get(rid)
        if spec is not None and records.metadata_links(spec):
            return f"{self.base_url}/v1.0/$metadata#communications/callRecords('{rid}')/{tail}"
        return f"{self.base_url}/v1.0/communications/callRecords/{rid}/{tail}"

    def _sessions_link(self, rid: str, offset: int, segments: bool, size: int) -> str:
        token = self.skiptokens.sign(
            {"k": "sessions", "r": rid, "o": offset, "s": segments, "n": size}
        )
        expand = "$expand=segments&" if segments else ""
        return self._link(rid, f"sessions?{expand}$skiptoken={token}")

    def _participants_link(self, rid: str, offset: int, size: int) -> str:
        token = self.skiptokens.sign({"k": "participants", "r": rid, "o": offset, "n": size})
        return self._link(rid, f"participants_v2?$skiptoken={token}")

    async def metadata(self, request: web.Request, route: Route) -> web.Response:
        """``GET /v1.0/$metadata``: the service's CSDL, as XML with status 200."""
        return web.Response(body=METADATA_XML, content_type="application/xml", charset="utf-8")

    def _verify_token(self, text: str, kind: str, rid: str | None = None) -> dict[str, Any]:
        try:
            state = self.skiptokens.verify(text, kind)
        except ODataError as exc:
            raise GraphError(400, "BadRequest", str(exc)) from exc
        if rid is not None and state.get("r") != rid:
            raise GraphError(400, "BadRequest", "The $skiptoken belongs to another resource.")
        return state

    async def get_record(self, request: web.Request, route: Route) -> web.Response:
        options = self._options(request, ("$expand", "$select"))
        try:
            exp = parse_expand(options.get("$expand"))
        except ODataError as exc:
            raise GraphError(400, "BadRequest", str(exc)) from exc
        spec = self._record(route, count_fetch=True)
        size = self._page_size(request, SESSIONS_PAGE)
        doc = self._record_document(spec, exp, size)
        if "$select" in options:  # $select works on callRecord (callrecords-callrecord-get)
            wanted = {f.strip().lower() for f in options["$select"].split(",") if f.strip()}
            doc = {k: v for k, v in doc.items() if k.lower() in wanted or k == "@odata.context"}
        return self.graph_json(doc)

    async def sessions_page(self, request: web.Request, route: Route) -> web.Response:
        options = self._options(request, ("$expand", "$skiptoken"))
        rid = route.record_id or ""
        if "$skiptoken" in options:
            state = self._verify_token(options["$skiptoken"], "sessions", rid)
            offset, segments, size = int(state["o"]), bool(state["s"]), int(state["n"])
        else:
            expand = re.sub(r"\s+", "", options.get("$expand", "")).lower()
            if expand not in ("", "segments"):
                raise GraphError(400, "BadRequest", "Only $expand=segments is supported here.")
            offset, segments = 0, expand == "segments"
            size = self._page_size(request, SESSIONS_PAGE)
        spec = self._record(route, count_fetch=False)
        suffix = "sessions(segments())" if segments else "sessions"
        body: dict[str, Any] = {
            "@odata.context": context(
                self.base_url, f"communications/callRecords('{rid}')/{suffix}"
            )
        }
        if offset + size < spec.total_sessions:
            body["@odata.nextLink"] = self._sessions_link(rid, offset + size, segments, size)
        body["value"] = records.sessions_slice(spec, self.base_url, offset, offset + size, segments)
        return self.graph_json(body)

    async def participants_page(self, request: web.Request, route: Route) -> web.Response:
        if not self.state.config.participants_v2_available:
            # A national cloud: learn.microsoft.com/graph/api/callrecords-callrecord-list-
            # participants_v2 lists the global service only; an unknown segment is a 400.
            raise GraphError(
                400, "BadRequest", "Resource not found for the segment 'participants_v2'."
            )
        options = self._options(request, ("$skiptoken",))
        rid = route.record_id or ""
        if "$skiptoken" in options:
            state = self._verify_token(options["$skiptoken"], "participants", rid)
            offset, size = int(state["o"]), int(state["n"])
        else:
            offset, size = 0, self._page_size(request, PARTICIPANTS_PAGE)
        spec = self._record(route, count_fetch=False)
        body: dict[str, Any] = {
            "@odata.context": context(
                self.base_url, f"communications/callRecords('{rid}')/participants_v2"
            )
        }
        if offset + size < spec.total_participants:
            body["@odata.nextLink"] = self._participants_link(rid, offset + size, size)
        body["value"] = records.participants_slice(spec, offset, offset + size)
        return self.graph_json(body)

    async def list_records(self, request: web.Request, route: Route) -> web.Response:
        options = self._options(request, ("$filter", "$skiptoken"))
        after: tuple[str, str] | None = None
        if "$skiptoken" in options:
            state = self._verify_token(options["$skiptoken"], "list")
            flt = CallRecordFilter.from_json(state["f"])
            after, size = (state["a"][0], state["a"][1]), int(state["n"])
        else:
            try:
                flt = parse_filter(options.get("$filter"))
            except ODataError as exc:
                raise GraphError(400, "BadRequest", str(exc)) from exc
            size = self._page_size(request, LIST_PAGE)
        now = utcnow()
        matches: list[RecordSpec] = []
        for spec in self.state.sorted_records():
            if self.state.availability(spec, now) != Availability.AVAILABLE:
                continue
            start = spec.start_dt
            if after and (spec.start, spec.id) <= after:
                continue
            if not flt.matches_start(start):
                continue
            if flt.participant and not records.has_participant(spec, flt.participant):
                continue
            matches.append(spec)
            if len(matches) > size:
                break
        page = matches[:size]
        body: dict[str, Any] = {
            "@odata.context": context(self.base_url, "communications/callRecords")
        }
        if len(matches) > size:
            last = page[-1]
            token = self.skiptokens.sign(
                {
                    "k": "list",
                    "f": flt.to_json(),
                    "a": [last.start, last.id],
                    "n": size,
                }
            )
            body["@odata.nextLink"] = (
                f"{self.base_url}/v1.0/communications/callRecords?$skiptoken={token}"
            )
        body["value"] = [records.list_item(spec, self.base_url) for spec in page]
        return self.graph_json(body)

    # ------------------------------------------------------------ subscriptions

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
        return data

    def _subscription(self, route: Route) -> Subscription:
        sid = route.subscription_id or ""
        sub = self.state.subscriptions.get(sid)
        if sub is None or not sub.live(utcnow()):
            self.state.live_subscriptions()
            raise GraphError(404, "ResourceNotFound", f"The object was not found: {sid[:40]}")
        return sub

    def _expiration(self, value: object) -> Any:
        try:
            expiration = parse_expiration(value)
        except ValueError as exc:
            raise GraphError(400, "ValidationError", f"expirationDateTime: {exc}") from exc
        config, now = self.state.config, utcnow()
        if expiration <= now:
            raise GraphError(400, "ValidationError", "expirationDateTime must be in the future.")
        if expiration > now + timedelta(minutes=config.max_expiration_minutes):
            raise GraphError(
                400,
                "ValidationError",
                "Subscription expiration can only be "
                f"{config.max_expiration_minutes} minutes in the future.",
            )
        return max(expiration, now + timedelta(minutes=config.min_expiration_minutes))

    @staticmethod
    def _url(data: dict[str, Any], key: str, required: bool) -> str | None:
        value = data.get(key)
        if value is None and not required:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
            raise GraphError(400, "ValidationError", f"{key} must be an absolute https URL.")
        return str(value)

    async def create_subscription(self, request: web.Request, route: Route) -> web.Response:
        data = await self._json_body(request)
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not data.get(key):
                raise GraphError(400, "ValidationError", f"{key} is required.")
        change = data["changeType"]
        kinds = [c.strip().lower() for c in str(change).split(",")]
        if not isinstance(change, str) or not set(kinds) <= {"created", "updated"}:
            raise GraphError(
                400, "ValidationError", "changeType for callRecords must be created and/or updated."
            )
        resource = str(data["resource"]).strip().lstrip("/")
        if not _RESOURCE.match(resource):
            raise GraphError(400, "InvalidRequest", f"Unsupported resource '{resource[:100]}'.")
        client_state = data.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise GraphError(400, "ValidationError", "clientState must be at most 128 characters.")
        if data.get("includeResourceData"):
            raise GraphError(
                400, "ValidationError", "includeResourceData is not supported for callRecords."
            )
        notification_url = self._url(data, "notificationUrl", True) or ""
        lifecycle_url = self._url(data, "lifecycleNotificationUrl", False)
        expiration = self._expiration(data["expirationDateTime"])
        self._check_quota_and_duplicates(resource, kinds, notification_url)
        for url in (notification_url, lifecycle_url):
            if url:
                reason = await self.notifier.validate(url)
                if reason:
                    raise GraphError(
                        400,
                        "InvalidRequest",
                        f"Subscription validation request failed for {url}: {reason}. "
                        "Notification endpoint must respond with 200 OK to validation request.",
                    )
        self._check_quota_and_duplicates(resource, kinds, notification_url)
        token: Token = request["token"]
        sub = Subscription(
            id=self.state.new_id(),
            resource=resource,
            change_type=",".join(kinds),
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            expiration=expiration,
            client_state=client_state,
            application_id=token.client_id,
            creator_id=token.client_id,
        )
        self.state.subscriptions[sub.id] = sub
        self.state.stats.subscription_changes["created"] += 1
        return self.graph_json(sub.to_graph(self.base_url, secret=False), 201)

    def _check_quota_and_duplicates(self, resource: str, kinds: list[str], url: str) -> None:
        """Graph refuses a second subscription of one app for the same resource and
        changeType, whatever its notificationUrl, with 409 naming the one that exists
        (learn.microsoft.com/graph/api/subscription-post-subscriptions, "Duplicate
        subscription behavior")."""
        live = self.state.live_subscriptions()
        for sub in live:
            if sub.resource.lower() == resource.lower() and sub.change_types() == set(kinds):
                raise GraphError(
                    409,
                    "ObjectIdentifierInUse",
                    f"Subscription Id {sub.id} already exists for the requested combination",
                )
        if len(live) >= self.state.config.subscription_quota:
            raise GraphError(
                403,
                "ExtensionError",
                "Operation: Create; Exception: [Status Code: Forbidden; Reason: The number of "
                f"subscriptions for callRecords has reached its limit of "
                f"{self.state.config.subscription_quota}.]",
            )

    async def list_subscriptions(self, request: web.Request, route: Route) -> web.Response:
        subs = self.state.live_subscriptions()
        return self.graph_json(
            {
                "@odata.context": context(self.base_url, "subscriptions"),
                "value": [s.to_graph(self.base_url, secret=False) for s in subs],
            }
        )

    async def get_subscription(self, request: web.Request, route: Route) -> web.Response:
        return self.graph_json(self._subscription(route).to_graph(self.base_url, secret=False))

    async def update_subscription(self, request: web.Request, route: Route) -> web.Response:
        data = await self._json_body(request)
        sub = self._subscription(route)
        unknown = set(data) - {"expirationDateTime", "notificationUrl", "@odata.type"}
        if unknown:
            raise GraphError(
                400,
                "ValidationError",
                f"Only expirationDateTime and notificationUrl can be updated, not {sorted(unknown)}.",
            )
        expiration = (
            self._expiration(data["expirationDateTime"]) if "expirationDateTime" in data else None
        )
        new_url = self._url(data, "notificationUrl", False)
        if new_url and new_url != sub.notification_url:
            reason = await self.notifier.validate(new_url)
            if reason:
                raise GraphError(400, "InvalidRequest", f"Subscription validation failed: {reason}")
            sub.notification_url = new_url
        if expiration is not None:
            sub.expiration = expiration
        return self.graph_json(sub.to_graph(self.base_url, secret=False))

    async def delete_subscription(self, request: web.Request, route: Route) -> web.Response:
        sub = self._subscription(route)
        self.state.subscriptions.pop(sub.id, None)
        self.state.stats.subscription_changes["deleted"] += 1
        return web.Response(status=204)

    async def reauthorize_subscription(self, request: web.Request, route: Route) -> web.Response:
        self._subscription(route)
        return web.Response(status=204)
