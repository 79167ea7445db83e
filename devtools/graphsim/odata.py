"""The OData bits the callRecords endpoints accept: $filter, $expand and signed $skiptokens.

Graph answers 400 to what it does not support, so does this: a client that builds a filter
Graph would reject finds out here, not in production.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from devtools.graphsim.records import parse_time


class ODataError(ValueError):
    """A query option Graph would answer 400 to."""


_OPS = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_DATE_CLAUSE = re.compile(
    r"^startDateTime\s+(lt|le|gt|ge)\s+('?)(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d{1,7})?)?"
    r"(?:Z|[+-]\d\d:\d\d))\2$",
    re.IGNORECASE,
)
_PARTICIPANT_CLAUSE = re.compile(
    r"^participants_v2/any\((\w+):\s*\1/id\s+eq\s+'([^']{1,200})'\)$", re.IGNORECASE
)


@dataclass
class CallRecordFilter:
    """startDateTime comparisons (all must hold) and at most one participant id."""

    bounds: list[tuple[str, datetime]] = field(default_factory=list)
    participant: str | None = None

    def matches_start(self, start: datetime) -> bool:
        return all(_OPS[op](start, value) for op, value in self.bounds)

    def to_json(self) -> dict[str, Any]:
        return {"b": [[op, value.isoformat()] for op, value in self.bounds], "p": self.participant}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecordFilter:
        bounds = [(str(op), datetime.fromisoformat(str(v))) for op, v in data.get("b", [])]
        return cls(bounds=bounds, participant=data.get("p"))


def parse_filter(text: str | None) -> CallRecordFilter:
    """``startDateTime (lt|le|gt|ge) <ISO with Z/offset>`` clauses (quotes optional) and
    ``participants_v2/any(p:p/id eq '<id>')``, joined with ``and``."""
    result = CallRecordFilter()
    if text is None:
        return result
    text = text.strip()
    if not text:
        raise ODataError("Invalid $filter: empty expression.")
    for raw in _AND.split(text):
        clause = raw.strip()
        while clause.startswith("(") and clause.endswith(")"):
            clause = clause[1:-1].strip()
        date = _DATE_CLAUSE.match(clause)
        if date:
            try:
                result.bounds.append((date.group(1).lower(), parse_time(date.group(3))))
            except ValueError as exc:
                raise ODataError(f"Invalid DateTimeOffset in $filter: {date.group(3)!r}.") from exc
            continue
        person = _PARTICIPANT_CLAUSE.match(clause)
        if person and result.participant is None:
            result.participant = person.group(2)
            continue
        raise ODataError(
            f"Invalid $filter clause {clause[:120]!r}: only startDateTime (lt, le, gt, ge) and "
            "participants_v2/any(p:p/id eq '...') combined with 'and' are supported."
        )
    return result


@dataclass(frozen=True)
class Expand:
    sessions: bool = False
    segments: bool = False
    participants: bool = False

    def context_fragment(self) -> str:
        parts = []
        if self.sessions:
            parts.append("sessions(segments())" if self.segments else "sessions()")
        if self.participants:
            parts.append("participants_v2()")
        return f"communications/callRecords({','.join(parts)})/$entity" if parts else ""


def _split_top_level(text: str) -> list[str]:
    items, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return items


def parse_expand(text: str | None) -> Expand:
    """``sessions($expand=segments)``, ``sessions`` and/or ``participants_v2``."""
    if text is None:
        return Expand()
    sessions = segments = participants = False
    for raw in _split_top_level(text):
        item = re.sub(r"\s+", "", raw).lower()
        if item == "sessions($expand=segments)":
            sessions = segments = True
        elif item == "sessions":
            sessions = True
        elif item == "participants_v2":
            participants = True
        else:
            raise ODataError(
                f"Unsupported $expand {raw.strip()[:80]!r}: use sessions($expand=segments) "
                "and/or participants_v2."
            )
    return Expand(sessions, segments, participants)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SkipTokens:
    """Opaque, tamper-evident paging state: base64url(JSON) + "." + HMAC. Only links this
    simulator produced work; anything else is a 400, as a forged token is on Graph."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest()[:18])

    def sign(self, state: dict[str, Any]) -> str:
        payload = orjson.dumps(state)
        return f"{_b64(payload)}.{self._mac(payload)}"

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
        except (ValueError, TypeError) as exc:
            raise ODataError("Invalid $skiptoken.") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ODataError("Invalid $skiptoken.")
        state = orjson.loads(payload)
        if not isinstance(state, dict) or state.get("k") != kind:
            raise ODataError("Invalid $skiptoken for this resource.")
        return state
