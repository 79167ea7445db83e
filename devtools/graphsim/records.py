"""Call record documents, generated from the documented "Get callRecord" example.

Every session and participant is a pure function of (record spec, index), so a page can
be built without materialising a 10,000-session record, the same record comes back after
a restart, and a new version only ever appends (earlier items never change).

Shapes follow the Graph docs: sessions and segments are clones of the seed page's full
expanded example (unknown-to-schema keys kept), participants_v2 entries and organizer_v2
use the documented participant shape ``{"id", "identity": {communicationsIdentitySet}}``
from ``callrecords-callrecord-list-participants_v2.md``. The deprecated ``organizer`` and
``participants`` stopped returning data on 2026-06-30 and are therefore not emitted.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from devtools.graphsim import quality

SEED_PATH = Path(__file__).with_name("seed_callrecord.json")
SEED: dict[str, Any] = json.loads(SEED_PATH.read_text(encoding="utf-8"))
SEED_SESSION: dict[str, Any] = SEED["sessions"][0]
SEED_SEGMENT: dict[str, Any] = SEED_SESSION["segments"][0]
TENANT_ID = SEED_SESSION["caller"]["identity"]["user"]["tenantId"]
RETENTION = timedelta(days=30)

_FIRST = ["Abbie", "Owen", "Anette", "Daichi", "Megan", "Lee", "Priya", "Tomas", "Ines", "Kwame"]
_LAST = ["Wilkins", "Franklin", "Thomsen", "Maruyama", "Bowen", "Gu", "Nair", "Novak", "Silva"]
_IDENTITY_KEYS = (
    "acsUser",
    "spoolUser",
    "phone",
    "guest",
    "encrypted",
    "onPremises",
    "acsApplicationInstance",
    "spoolApplicationInstance",
    "applicationInstance",
    "application",
    "device",
    "user",
)
_DURATION = re.compile(r"^PT(\d+(?:\.\d+)?)S$")
_NS = uuid.UUID("5f0c2f4e-5b7a-4c36-9f8e-6a1d1c0b7e21")


def graph_time(value: datetime) -> str:
    """Graph's 7-digit fractional UTC form, e.g. 2020-02-25T18:52:21.2169889Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_time(value: str) -> datetime:
    """ISO 8601 with Z or an offset (up to 7 fractional digits); naive means UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:  # Python accepts at most 6 fractional digits
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class RecordSpec:
    """Everything that determines a record's documents; small enough to persist as JSON."""

    id: str
    start: str
    end: str
    sessions: int
    participants: int
    segments_per_session: int = 1
    duplicate_session_ids: bool = False
    seed: int = 0
    version: int = 1
    last_modified: str = ""
    extra_sessions: int = 0
    extra_participants: int = 0
    available_after_fetches: int = 0
    # Graph minutes after creation (its notification) before the first version can be read. An
    # assumption stricter than the pages: the FAQ's "up to 60 minutes" to be available
    # (callrecords-api-faq), stretched to the notification latency table's 150-minute maximum
    # (change-notifications-overview, "Latency"); run at SimConfig.time_scale (150 min -> 9 s).
    available_after_minutes: float = 0.0
    never_available: bool = False
    fetches: int = 0
    created_at: float = 0.0
    modalities: list[str] = field(default_factory=lambda: ["audio"])
    link_style: str = ""  # "path", "metadata", or "" (by id: about half the records each)
    requests: int = 0  # Graph requests served for this record (any route)
    bump_after_requests: int = 0  # publish the next version after this many (0: never)

    @property
    def total_sessions(self) -> int:
        return self.sessions + self.extra_sessions

    @property
    def total_participants(self) -> int:
        return self.participants + self.extra_participants

    @property
    def start_dt(self) -> datetime:
        return parse_time(self.start)

    def shape(self) -> Shape:
        return Shape(
            self.id,
            self.seed,
            self.start,
            self.end,
            self.participants,
            self.segments_per_session,
            self.duplicate_session_ids,
            tuple(self.modalities),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecordSpec:
        return cls(**data)


@dataclass(frozen=True)
class Shape:
    """The immutable part of a spec: what one session or participant depends on."""

    id: str
    seed: int
    start: str
    end: str
    base_participants: int
    segments_per_session: int
    duplicate_session_ids: bool
    modalities: tuple[str, ...] = ("audio",)


def new_spec(
    record_id: str,
    *,
    seed: int,
    start: datetime | None,
    now: datetime,
    sessions: int,
    participants: int,
    segments_per_session: int = 1,
    duplicate_session_ids: bool = False,
    available_after_fetches: int = 0,
    never_available: bool = False,
    created_at: float = 0.0,
) -> RecordSpec:
    """Version 1 of a record: a 1-60 minute call, published 1-30 minutes after it ended.
    Without ``start`` the call ended (and was published) just before ``now``."""
    rng = random.Random(f"{seed}:{record_id}:record")
    duration = timedelta(seconds=rng.randint(60, 3600), microseconds=rng.randint(0, 999_999))
    delay = timedelta(seconds=rng.randint(60, 1800), microseconds=rng.randint(0, 999_999))
    if start is None:
        start = now - delay - duration
    end = start + duration
    modalities = ["audio"] + [m for m in ("video", "screenSharing") if rng.random() < 0.3]
    return RecordSpec(
        id=record_id,
        start=graph_time(start),
        end=graph_time(end),
        sessions=sessions,
        participants=participants,
        segments_per_session=segments_per_session,
        duplicate_session_ids=duplicate_session_ids,
        seed=seed,
        last_modified=graph_time(end + delay),
        available_after_fetches=available_after_fetches,
        never_available=never_available,
        created_at=created_at,
        modalities=modalities,
    )


LINK_STYLES = ("path", "metadata")


def metadata_links(spec: RecordSpec) -> bool:
    """Whether the record's next links use the ``$metadata#`` context-URL form."""
    if spec.link_style:
        return spec.link_style == "metadata"
    return int(spec.id[-1], 16) % 2 == 1


def bump_version(spec: RecordSpec, now: datetime) -> None:
    """Next version: new lastModifiedDateTime, sometimes one more session and/or participant."""
    spec.version += 1
    rng = random.Random(f"{spec.seed}:{spec.id}:v{spec.version}")
    if rng.random() < 0.5:
        spec.extra_sessions += 1
    if rng.random() < 0.3:
        spec.extra_participants += 1
    previous = parse_time(spec.last_modified)
    spec.last_modified = graph_time(max(now, previous + timedelta(milliseconds=1)))


# ---------------------------------------------------------------- participants


@lru_cache(maxsize=65536)
def participant(shape: Shape, index: int) -> dict[str, Any]:
    """participants_v2[index]: distinct ids within a record; mostly users, some phones/guests."""
    rng = random.Random(f"{shape.seed}:{shape.id}:p")
    base = rng.randrange(1_000_000_000)
    number = base + index * 7919  # distinct for every index of one record
    rng = random.Random(f"{shape.seed}:{shape.id}:p{index}")
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_KEYS)
    kind = rng.random()
    if index == 0 or kind < 0.85:
        pid = str(uuid.uuid5(_NS, f"user-{number}"))
        first, last = _FIRST[number % len(_FIRST)], _LAST[(number // 7) % len(_LAST)]
        identity["user"] = {
            "@odata.type": "#microsoft.graph.userIdentity",
            "id": pid,
            "displayName": f"{first} {last}",
            "tenantId": TENANT_ID,
            "userPrincipalName": f"{first}.{last}{number % 10000}@contoso.com".lower(),
        }
    elif kind < 0.95:
        pid = f"+1425{number % 10_000_000:07d}"
        identity["phone"] = {"id": pid, "displayName": None, "tenantId": None}
    else:
        pid = str(uuid.uuid5(_NS, f"guest-{number}"))
        identity["guest"] = {"id": pid, "displayName": f"Guest {number % 1000}", "tenantId": None}
    return {"id": pid, "identity": identity}


def participant_id(shape: Shape, index: int) -> str:
    return str(participant(shape, index)["id"])


def _endpoint_identity(person: dict[str, Any]) -> dict[str, Any]:
    """The session/segment endpoint identity: the seed's identitySet with the person's entry."""
    found = {k: v for k, v in person["identity"].items() if v is not None}
    return {"@odata.type": "#microsoft.graph.identitySet", **found}


# ---------------------------------------------------------------- sessions


def _clone(value: Any) -> Any:
    """A deep copy, several times faster than copy.deepcopy for JSON data."""
    return orjson.loads(orjson.dumps(value))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every scalar under ``value``."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _kind(key: str, value: Any) -> str | None:
    """How a seed media value is varied: None for values kept as they are."""
    if isinstance(value, bool) or value is None:
        return None
    if key in ("port", "relayPort"):
        return "port"
    if isinstance(value, int):
        return "int" if value not in (0, 4294967295) else None
    if isinstance(value, float):
        return "float" if value else None
    if key == "streamId":
        return "stream"
    if key in ("ipAddress", "relayIPAddress", "reflexiveIPAddress"):
        return "ip"
    if isinstance(value, str) and _DURATION.match(value):
        return "duration"
    return None


# (parent path, key, seed value, kind) of every media value a generated segment varies.
_MEDIA_LEAVES = [
    (path[:-1], path[-1], value, kind)
    for path, value in _leaves(SEED_SEGMENT.get("media", []), ("media",))
    if (kind := _kind(str(path[-1]), value))
]


def _segment(rng: random.Random) -> dict[str, Any]:
    """A clone of the seed segment with its media numbers scaled, per network, device or
    stream, by a random factor, and fresh ports, addresses and stream ids."""
    seg = _clone(SEED_SEGMENT)
    factors: dict[tuple[Any, ...], float] = {}
    for parent_path, key, value, kind in _MEDIA_LEAVES:
        parent = seg
        for step in parent_path:
            parent = parent[step]
        factor = factors.get(parent_path)
        if factor is None:
            factor = factors[parent_path] = rng.uniform(0.5, 1.5)
        if kind == "int":
            parent[key] = int(value * factor)
        elif kind == "float":
            parent[key] = round(value * factor, 6)
        elif kind == "duration":
            parent[key] = f"PT{float(value[2:-1]) * factor:.3f}S"
        elif kind == "port":
            parent[key] = rng.randint(1024, 65535)
        elif kind == "stream":
            parent[key] = str(rng.randint(10**9, 2**31 - 1))
        else:  # ip: same first octet (private, loopback or relay range), random rest
            head = value.split(".")[0]
            parent[key] = f"{head}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randint(1, 254)}"
    return seg


def session_id(shape: Shape, index: int) -> str:
    """Distinct ids, except that with duplicate_session_ids every third session repeats the
    previous one's id (what auto attendant / call queue transfers look like)."""
    if shape.duplicate_session_ids and index % 3 == 2:
        index -= 1
    return _uuid(random.Random(f"{shape.seed}:{shape.id}:sid{index}"))


def _endpoint(template: dict[str, Any], person: dict[str, Any], rng: random.Random) -> dict:
    out = _clone(template)
    out["identity"] = _endpoint_identity(person)
    if "feedback" in out:
        if rng.random() < 0.5:
            del out["feedback"]
        else:
            out["feedback"]["rating"] = rng.choice(["poor", "fair", "good", "excellent"])
    return out


@lru_cache(maxsize=8192)
def _session_full(shape: Shape, index: int, base_url: str) -> dict[str, Any]:
    rng = random.Random(f"{shape.seed}:{shape.id}:s{index}")
    start, end = parse_time(shape.start), parse_time(shape.end)
    span = max((end - start).total_seconds(), 1.0)
    s_start = start + timedelta(seconds=rng.uniform(0, span * 0.5))
    left = (end - s_start).total_seconds()
    s_end = s_start + timedelta(seconds=rng.uniform(min(1.0, left), max(left, 1.0)))
    people = max(shape.base_participants, 1)
    caller = participant(shape, rng.randrange(people))
    callee = participant(shape, rng.randrange(people))
    sid = session_id(shape, index)
    segments = []
    count = rng.randint(1, max(shape.segments_per_session, 1))
    seg_span = (s_end - s_start) / count
    # Media quality has its own random stream, so the rest of the document is unchanged by it.
    qrng = random.Random(f"{shape.seed}:{shape.id}:s{index}:quality")
    video, sharing = quality.session_media(shape.modalities, qrng)
    for n in range(count):
        seg = _segment(rng)
        seg["startDateTime"] = graph_time(s_start + seg_span * n)
        seg["endDateTime"] = graph_time(s_start + seg_span * (n + 1))
        seg["id"] = _uuid(rng)
        seg["caller"] = _endpoint(SEED_SEGMENT["caller"], caller, rng)
        seg["callee"] = _endpoint(SEED_SEGMENT["callee"], callee, rng)
        quality.apply(seg, seg_span.total_seconds(), video, sharing, qrng)
        segments.append(seg)
    session: dict[str, Any] = {}
    for key, value in SEED_SESSION.items():  # seed key order, seed extras kept
        if key == "modalities":
            session[key] = [
                *value,
                *(["video"] if video else []),
                *(["screenSharing"] if sharing else []),
            ]
        elif key == "startDateTime":
            session[key] = graph_time(s_start)
        elif key == "endDateTime":
            session[key] = graph_time(s_end)
        elif key == "id":
            session[key] = sid
        elif key == "caller":
            session[key] = _endpoint(value, caller, rng)
        elif key == "callee":
            session[key] = _endpoint(value, callee, rng)
        elif key == "segments@odata.context":
            session[key] = (
                f"{base_url}/v1.0/$metadata#communications/callRecords('{shape.id}')"
                f"/sessions('{sid}')/segments"
            )
        elif key == "segments":
            session[key] = segments
        else:
            session[key] = _clone(value)
    return session


def session(shape: Shape, index: int, base_url: str, segments: bool = True) -> dict[str, Any]:
    """sessions[index], with its segments (``$expand=segments``) or without. Shared: do not
    mutate the result."""
    full = _session_full(shape, index, base_url)
    if segments:
        return full
    return {k: v for k, v in full.items() if k not in ("segments", "segments@odata.context")}


# ---------------------------------------------------------------- documents


def context(base_url: str, fragment: str) -> str:
    return f"{base_url}/v1.0/$metadata#{fragment}"


def record_top(spec: RecordSpec, base_url: str, odata_context: str | None = None) -> dict:
    """The record's own properties and the default-expanded organizer_v2 (no sessions)."""
    shape = spec.shape()
    prefix = f"communications/callRecords('{spec.id}')"
    return {
        "@odata.context": odata_context or context(base_url, "communications/callRecords/$entity"),
        "version": spec.version,
        "type": "groupCall" if spec.total_participants > 2 else "peerToPeer",
        "modalities": list(spec.modalities),
        "lastModifiedDateTime": spec.last_modified,
        "startDateTime": spec.start,
        "endDateTime": spec.end,
        "id": spec.id,
        "organizer_v2@odata.context": context(base_url, f"{prefix}/organizer_v2/$entity"),
        "organizer_v2": participant(shape, 0),
        "participants_v2@odata.context": context(base_url, f"{prefix}/participants_v2/$entity"),
    }


def list_item(spec: RecordSpec, base_url: str) -> dict[str, Any]:
    """A record as List callRecords shows it: no sessions, no participants_v2."""
    item = record_top(spec, base_url)
    del item["@odata.context"]
    del item["participants_v2@odata.context"]
    return item


def sessions_slice(
    spec: RecordSpec, base_url: str, start: int, stop: int, segments: bool = True
) -> list[dict[str, Any]]:
    shape = spec.shape()
    return [
        session(shape, i, base_url, segments) for i in range(start, min(stop, spec.total_sessions))
    ]


def participants_slice(spec: RecordSpec, start: int, stop: int) -> list[dict[str, Any]]:
    shape = spec.shape()
    return [participant(shape, i) for i in range(start, min(stop, spec.total_participants))]


def has_participant(spec: RecordSpec, pid: str) -> bool:
    shape = spec.shape()
    wanted = pid.lower()
    return any(participant_id(shape, i).lower() == wanted for i in range(spec.total_participants))
