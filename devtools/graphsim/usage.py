"""PSTN and Direct Routing call logs: getPstnCalls / getDirectRoutingCalls and their rows.

What the documentation says, and what is served here:

- ``GET /v1.0/communications/callRecords/getPstnCalls(fromDateTime={},toDateTime={})`` and
  ``…/getDirectRoutingCalls(…)``; both parameters are DateTimeOffset, the documented example
  passes bare dates (``fromDateTime=2019-11-01``), so dates and ``…T…Z`` / ``…T…±hh:mm``
  date-times are accepted (learn.microsoft.com/graph/api/callrecords-callrecord-getpstncalls,
  …/callrecords-callrecord-getdirectroutingcalls).
- ``fromDateTime`` is inclusive and the range is by call start. ``toDateTime`` is inclusive on
  the getPstnCalls page and exclusive on the getDirectRoutingCalls page: each is served as
  its page says, so a client that lays windows end to end gets every row (twice, at most,
  on a getPstnCalls boundary).
- At most 90 days a request (stated on the getPstnCalls page; the getDirectRoutingCalls page
  states no limit, the stricter reading applies it to both): a longer range is a 400 with
  Graph's ``{"error": {"code", "message", "innerError"}}`` body.
- 1,000 rows a page, ``@odata.count`` (rows in this page, as in the example) and an
  ``@odata.nextLink`` while more remain. The links are built as the examples show them:
  ``getPstnCalls(from=…,to=…)?$skip=1000`` (sic: the PSTN example shortens the parameter
  names) and ``getDirectRoutingCalls(fromDateTime=…,toDateTime=…)?$skip=1000``; both forms
  are accepted. ``$skip`` is an offset, so a row that appears mid-paging can shift the pages:
  clients need an overlap, as with real Graph.
- Direct Routing numbers come masked as in the example (``+12345678***``); PSTN numbers are
  shown whole, as in its example. A Direct Routing row's ``correlationId`` is the id of the
  call record of that call.
- Throttling (learn.microsoft.com/graph/throttling-limits, PSTN and Direct Routing logs):
  200 requests / 60 s per app per tenant and 50 / 60 s per collection; see faults.py.
- Late rows: neither function's page states when a call's row appears. The Teams admin
  center's usage reports "usually reflect a 24 to 48 hour latency from time of activity"
  (learn.microsoft.com/microsoftteams/teams-analytics-and-reports/pstn-minute-pools-report);
  taking that as the logs' latency is an assumption, kept as the limit here: rows added
  with ``visible_after_hours`` (0-48, MAX_LATENCY_HOURS) are served only once that many
  Graph hours have passed, at SimConfig.time_scale (0.001: 48 h -> 172.8 s).
"""

from __future__ import annotations

import bisect
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from devtools.graphsim.records import parse_time

if TYPE_CHECKING:
    from devtools.graphsim.server import Route, Simulator

PAGE = 1000
MAX_RANGE = timedelta(days=90)
MAX_LATENCY_HOURS = 48  # an assumption: see "Late rows" above
KINDS = ("pstn", "directrouting")
ROUTE_KINDS = {"pstn": "pstn_calls", "directrouting": "direct_routing_calls"}
FUNCTIONS = {"getpstncalls": "pstn", "getdirectroutingcalls": "directrouting"}
_CALL = re.compile(r"^(getpstncalls|getdirectroutingcalls)\((.*)\)$", re.IGNORECASE | re.DOTALL)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_NULL_TIME = "0001-01-01T00:00:00Z"  # what the Direct Routing example shows for "not set"

_USERS = [
    ("Richard", "Malk"),
    ("Abbie", "Wilkins"),
    ("Owen", "Franklin"),
    ("Anette", "Thomsen"),
    ("Daichi", "Maruyama"),
    ("Megan", "Bowen"),
    ("Priya", "Nair"),
    ("Tomas", "Novak"),
]
_DESTINATIONS = [
    ("United States", "US", "+1", 0.012),
    ("United Kingdom", "GB", "+44", 0.021),
    ("Germany", "DE", "+49", 0.024),
    ("Japan", "JP", "+81", 0.061),
    ("Brazil", "BR", "+55", 0.083),
]
_SIP_FAILURES = [
    (404, 560404, "Not Found"),
    (486, 560486, "Busy Here"),
    (487, 540487, "Request Terminated"),
    (480, 560480, "Temporarily Unavailable"),
    (503, 560503, "Service Unavailable"),
]
_LOCATIONS = ["USWE", "USEA", "EUNO", "EUWE", "APSE"]
_TRUNKS = ["sbc1.contoso.com", "sbc2.contoso.com", "tll-audiocodes01.adatum.biz"]


class UsageError(Exception):
    """Answered as a Graph error (the server turns it into its error shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _pstn_time(dt: datetime) -> str:
    """The getPstnCalls example's 7-digit fractional form."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _dr_time(dt: datetime) -> str:
    """The getDirectRoutingCalls example's millisecond form."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def mask(number: str) -> str:
    """``+1234567890`` -> ``+1234567***``, as the Direct Routing example shows numbers."""
    return number[:-3] + "***" if len(number) > 4 else number


def parse_offset(name: str, text: str) -> datetime:
    """A DateTimeOffset function parameter: a date (midnight UTC) or a date-time with Z or
    an offset; anything else is a 400, as Graph rejects a malformed literal."""
    text = text.strip()
    if _DATE.match(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    if _DATETIME.match(text):
        return parse_time(text)
    raise UsageError(
        400, "BadRequest", f"The parameter '{name}' value '{text[:40]}' is not a DateTimeOffset."
    )


@dataclass(frozen=True)
class Call:
    """One parsed function call."""

    kind: str
    since: datetime
    until: datetime


def parse_call(segment: str) -> Call | None:
    """``getPstnCalls(fromDateTime=…,toDateTime=…)`` -> Call; None if not a usage function."""
    m = _CALL.match(segment)
    if not m:
        return None
    kind = FUNCTIONS[m.group(1).lower()]
    params: dict[str, str] = {}
    for part in m.group(2).split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(400, "BadRequest", f"Malformed function parameter '{part[:40]}'.")
        params[key.strip()] = value
    # The documented PSTN next link spells them from= / to=.
    alias = {"from": "fromDateTime", "to": "toDateTime"}
    named = {alias.get(k, k): v for k, v in params.items()}
    unknown = set(named) - {"fromDateTime", "toDateTime"}
    if unknown:
        raise UsageError(400, "BadRequest", f"Unknown function parameter(s) {sorted(unknown)}.")
    for name in ("fromDateTime", "toDateTime"):
        if name not in named:
            raise UsageError(400, "BadRequest", f"The parameter '{name}' is required.")
    since = parse_offset("fromDateTime", named["fromDateTime"])
    until = parse_offset("toDateTime", named["toDateTime"])
    if until < since:
        raise UsageError(400, "BadRequest", "toDateTime must not be before fromDateTime.")
    if until - since > MAX_RANGE:
        raise UsageError(
            400,
            "BadRequest",
            "The fromDateTime and toDateTime values cannot be more than a date range of 90 days.",
        )
    return Call(kind, since, until)


class UsageLogs:
    """The tenant's PSTN and Direct Routing logs, sorted by (start, id) for stable paging."""

    def __init__(self, sim: Simulator, seed: int | None) -> None:
        self.sim = sim
        self.rng = random.Random(seed)
        # (start, id, insertion number, row): sorted for stable $skip paging
        self.rows: dict[str, list[tuple[datetime, str, int, dict[str, Any]]]] = {
            k: [] for k in KINDS
        }
        self.added = 0
        self.visible_at: dict[int, float] = {}  # insertion number -> time.time() it shows

    def clear(self) -> None:
        for rows in self.rows.values():
            rows.clear()
        self.visible_at.clear()

    def _hide_since(self, first: int, hours: float) -> None:
        """Rows from insertion number ``first`` on stay out of answers for ``hours``."""
        if hours > 0:
            at = time.time() + self.sim.state.config.scaled(hours * 3600)
            for number in range(first, self.added + 1):
                self.visible_at[number] = at

    def add(self, kind: str, row: dict[str, Any]) -> None:
        start = parse_time(str(row["startDateTime"]))
        self.added += 1
        bisect.insort(self.rows[kind], (start, str(row["id"]), self.added, row))

    # ------------------------------------------------------------ rows

    def _user(self) -> tuple[str, str, str]:
        first, last = self.rng.choice(_USERS)
        upn = f"{first}.{last}@contoso.com".lower()
        uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, upn))
        return uid, upn, f"{first} {last}"

    def pstn_row(self, start: datetime) -> dict[str, Any]:
        """A pstnCallLogRow shaped like the getPstnCalls example."""
        rng = self.rng
        uid, upn, name = self._user()
        destination, country, prefix, rate = rng.choice(_DESTINATIONS)
        call_type = rng.choice(["user_out", "user_out", "user_in", "conf_out"])
        duration = rng.randint(5, 1800)
        outbound = call_type.endswith("_out")
        external = f"{prefix}{rng.randint(10**8, 10**9 - 1)}"
        own = f"+1425{rng.randint(10**6, 10**7 - 1)}"
        charge = round(duration / 60 * rate, 2) if outbound else 0.0
        return {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "callId": f"{rng.randint(10**9, 2 * 10**9)}_{rng.randint(10**8, 10**9)}@61.221.3.176",
            "userId": uid,
            "userPrincipalName": upn,
            "userDisplayName": name,
            "startDateTime": _pstn_time(start),
            "endDateTime": _pstn_time(start + timedelta(seconds=duration)),
            "duration": duration,
            "charge": charge,
            "callType": call_type,
            "currency": "USD",
            "calleeNumber": external if outbound else own,
            "usageCountryCode": "US",
            "tenantCountryCode": "US",
            "connectionCharge": 0.0,
            "callerNumber": own if outbound else external,
            "destinationContext": None
            if not outbound
            else ("Domestic" if country == "US" else "International"),
            "destinationName": destination,
            "conferenceId": None if call_type != "conf_out" else f"{rng.randint(10**7, 10**8)}",
            "licenseCapability": "MCOPSTNU",
            "inventoryType": "Subscriber",
            "operator": "Microsoft",
            "callDurationSource": "microsoft",
        }

    def direct_routing_row(self, start: datetime, correlation_id: str | None) -> dict[str, Any]:
        """A directRoutingLogRow shaped like the getDirectRoutingCalls example."""
        rng = self.rng
        uid, upn, name = self._user()
        _, _, prefix, _ = rng.choice(_DESTINATIONS)
        success = rng.random() < 0.85
        duration = rng.randint(5, 1800) if success else 0
        call_type = rng.choice(["ByotIn", "ByotOut", "ByotOutUserForwarding"])
        if success:
            sip, sub, phrase = 0, 540000, "BYE"
        else:
            sip, sub, phrase = rng.choice(_SIP_FAILURES)
        external = f"{prefix}{rng.randint(10**8, 10**9 - 1)}"
        own = f"+1425{rng.randint(10**6, 10**7 - 1)}"
        inbound = call_type == "ByotIn"
        return {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "correlationId": correlation_id or str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "userId": uid,
            "userPrincipalName": upn,
            "userDisplayName": name,
            "startDateTime": _dr_time(start),
            "inviteDateTime": _dr_time(start - timedelta(seconds=rng.randint(1, 5))),
            "failureDateTime": _NULL_TIME if success else _dr_time(start),
            "endDateTime": _dr_time(start + timedelta(seconds=duration)) if success else _NULL_TIME,
            "duration": duration,
            "callType": call_type,
            "successfulCall": success,
            "callerNumber": mask(external if inbound else own),
            "calleeNumber": mask(own if inbound else external),
            "mediaPathLocation": rng.choice(_LOCATIONS),
            "signalingLocation": rng.choice(_LOCATIONS),
            "finalSipCode": sip,
            "callEndSubReason": sub,
            "finalSipCodePhrase": phrase,
            "trunkFullyQualifiedDomainName": rng.choice(_TRUNKS),
            "mediaBypassEnabled": rng.random() < 0.3,
        }

    def generate(
        self,
        kind: str,
        count: int,
        since: datetime,
        until: datetime,
        correlation_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """``count`` rows with starts spread evenly over [since, until)."""
        span = (until - since) / max(count, 1)
        made = []
        for i in range(count):
            start = since + span * i
            if kind == "pstn":
                row = self.pstn_row(start)
            else:
                cid = correlation_ids[i] if correlation_ids and i < len(correlation_ids) else None
                row = self.direct_routing_row(start, cid)
            self.add(kind, row)
            made.append(row)
        return made

    # ------------------------------------------------------------ the Graph route

    def route(
        self, method: str, path: str
    ) -> tuple[Route, Callable[[web.Request, Route], Awaitable[web.StreamResponse]]] | None:
        """The route for ``communications/callRecords/get…Calls(…)``, or None."""
        from devtools.graphsim.server import GraphError, Route

        parts = path.split("/")
        if len(parts) != 3 or parts[0].lower() != "communications":
            return None
        if parts[1].lower() != "callrecords" or not _CALL.match(parts[2]):
            return None
        kind = FUNCTIONS[parts[2].split("(", 1)[0].lower()]
        if method != "GET":
            raise GraphError(405, "Request_BadRequest", f"{method} is not supported here.")
        return Route(ROUTE_KINDS[kind], record_id=parts[2]), self.serve

    async def serve(self, request: web.Request, route: Route) -> web.StreamResponse:
        from devtools.graphsim.server import GraphError

        try:
            call = parse_call(route.record_id or "")
        except UsageError as exc:
            raise GraphError(exc.status, exc.code, exc.message) from exc
        assert call is not None  # route() matched it
        if call.kind != "pstn" and not self.sim.state.config.direct_routing_available:
            # A cloud without the function: an unknown segment is a 400, as for participants_v2.
            raise GraphError(
                400, "BadRequest", "Resource not found for the segment 'getDirectRoutingCalls'."
            )
        skip = 0
        for key, value in request.query.items():
            if key.lower() == "$skip" and value.isdigit():
                skip = int(value)
            elif key.startswith("$"):
                raise GraphError(
                    400, "BadRequest", f"Query option '{key}' is not supported by this function."
                )
        rows = self.rows[call.kind]
        first = bisect.bisect_left(rows, (call.since,))
        if call.kind == "pstn":  # toDateTime inclusive
            last = bisect.bisect_right(rows, (call.until, "\uffff"))
        else:  # toDateTime exclusive
            last = bisect.bisect_left(rows, (call.until,))
        now = time.time()
        selected = [r for r in rows[first:last] if self.visible_at.get(r[2], 0.0) <= now]
        page = [row for _, _, _, row in selected[skip : skip + PAGE]]
        base = self.sim.base_url
        kind_type = "pstnCallLogRow" if call.kind == "pstn" else "directRoutingLogRow"
        body: dict[str, Any] = {
            "@odata.context": f"{base}/v1.0/$metadata#Collection(microsoft.graph.callRecords."
            f"{kind_type})",
            "@odata.count": len(page),
            "value": page,
        }
        if skip + PAGE < len(selected):
            frm, to = _link_time(call.since), _link_time(call.until)
            if call.kind == "pstn":
                fn = f"getPstnCalls(from={frm},to={to})"
            else:
                fn = f"getDirectRoutingCalls(fromDateTime={frm},toDateTime={to})"
            body["@odata.nextLink"] = (
                f"{base}/v1.0/communications/callRecords/{fn}?$skip={skip + PAGE}"
            )
        return self.sim.graph_json(body)

    # ------------------------------------------------------------ control API

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_sim/usage/{kind}", self.control_add),
            web.get("/_sim/usage/{kind}", self.control_list),
            web.post("/_sim/usage-reset", self.control_reset),
        ]

    def _kind(self, request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            raise web.HTTPNotFound(
                text=orjson.dumps(
                    {"error": {"code": "NotFound", "message": f"kind must be one of {KINDS}"}}
                ).decode(),
                content_type="application/json",
            )
        return kind

    async def control_add(self, request: web.Request) -> web.Response:
        """``{count, start, end, correlation_ids?}`` or ``{rows: [...]}`` (taken as given)."""
        kind = self._kind(request)
        try:
            data = orjson.loads(await request.read() or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            late = data.get("visible_after_hours", 0)
            if isinstance(late, bool) or not isinstance(late, (int, float)):
                raise ValueError("visible_after_hours must be a number")
            if not 0 <= late <= MAX_LATENCY_HOURS:
                raise ValueError(f"visible_after_hours must be from 0 to {MAX_LATENCY_HOURS}")
            first_new = self.added + 1
            if "rows" in data:
                rows = data["rows"]
                if not isinstance(rows, list):
                    raise ValueError("rows must be a list of objects")
                for row in rows:
                    if not isinstance(row, dict) or "startDateTime" not in row or "id" not in row:
                        raise ValueError("each row needs id and startDateTime")
                    self.add(kind, row)
                self._hide_since(first_new, late)
                return web.json_response({"added": len(rows)}, status=201)
            count = data.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1_000_000:
                raise ValueError("count must be an integer from 0 to 1000000")
            start = parse_time(str(data["start"]))
            end = parse_time(str(data["end"]))
            if end <= start:
                raise ValueError("end must be after start")
            cids = data.get("correlation_ids")
            if cids is not None and not (
                isinstance(cids, list) and all(isinstance(c, str) for c in cids)
            ):
                raise ValueError("correlation_ids must be a list of strings")
        except (ValueError, KeyError, orjson.JSONDecodeError) as exc:
            return web.json_response(
                {"error": {"code": "BadRequest", "message": str(exc)}}, status=400
            )
        made = self.generate(kind, count, start, end, cids)
        self._hide_since(first_new, late)
        return web.json_response({"added": len(made), "ids": [r["id"] for r in made]}, status=201)

    async def control_list(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        return web.Response(
            body=orjson.dumps([row for _, _, _, row in self.rows[kind]]),
            content_type="application/json",
        )

    async def control_reset(self, request: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"reset": True})


def _link_time(dt: datetime) -> str:
    """A date when it is midnight (as the documented links show), else a Z date-time."""
    dt = dt.astimezone(UTC)
    if dt == dt.replace(hour=0, minute=0, second=0, microsecond=0):
        return dt.strftime("%Y-%m-%d")
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"
