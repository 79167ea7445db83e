"""One archived record -> rows of the three analysis tables, and their Parquet schemas.

Tables (Hive-partitioned by the call's UTC start date, ``{table}/date=YYYY-MM-DD/``):

- ``calls``: one row per record;
- ``streams``: one row per media stream of every segment of every session, with the endpoint
  facts of the segment's caller and callee and the stream's classification;
- ``participants``: one row per ``participants_v2`` entry.

Field names and meanings: learn.microsoft.com/graph/api/resources/callrecords-callrecord,
callrecords-segment, callrecords-media, callrecords-mediastream, callrecords-networkinfo,
callrecords-deviceinfo and callrecords-participantendpoint. Graph's durations (``PT0.016S``)
become milliseconds (``*_ms``). A value of the wrong type is stored as null rather than
stopping the build: the archive keeps the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import pyarrow as pa

from shared.analytics.durations import duration_ms_or_none
from shared.analytics.rules import (
    DEFAULT_RULES,
    RULE_SETS,
    Classification,
    Metric,
    RuleSet,
    classify,
    stream_kind,
)
from shared.clock import parse_graph_datetime

# Bumped when a schema or the meaning of a column changes: every day is then rebuilt.
TABLES_VERSION = "1"

Row = dict[str, Any]
_TS = pa.timestamp("us", tz="UTC")

_ENDPOINT_FIELDS = (
    ("user_id", pa.string()),
    ("display_name", pa.string()),
    ("platform", pa.string()),
    ("product_family", pa.string()),
    ("subnet", pa.string()),
    ("ip_address", pa.string()),
    ("connection_type", pa.string()),
    ("capture_device", pa.string()),
    ("render_device", pa.string()),
)

CALLS = pa.schema(
    [
        ("call_record_id", pa.string()),
        ("version", pa.int64()),
        ("call_type", pa.string()),
        ("modalities", pa.string()),  # comma-separated: every engine reads it as it is
        ("start_time", _TS),
        ("end_time", _TS),
        ("last_modified_time", _TS),
        ("duration_s", pa.float64()),
        ("organizer_user_id", pa.string()),
        ("organizer_display_name", pa.string()),
        ("session_count", pa.int64()),
        ("segment_count", pa.int64()),
        ("participant_count", pa.int64()),
        ("stream_count", pa.int64()),
        ("classified_stream_count", pa.int64()),
        ("poor_stream_count", pa.int64()),
    ]
)

STREAMS = pa.schema(
    [
        ("call_record_id", pa.string()),
        ("version", pa.int64()),
        ("session_id", pa.string()),
        ("segment_id", pa.string()),
        ("segment_start", _TS),
        ("segment_end", _TS),
        ("media_label", pa.string()),
        ("stream_kind", pa.string()),
        ("stream_id", pa.string()),
        ("stream_direction", pa.string()),
        ("average_jitter_ms", pa.float64()),
        ("max_jitter_ms", pa.float64()),
        ("average_round_trip_time_ms", pa.float64()),
        ("max_round_trip_time_ms", pa.float64()),
        ("average_packet_loss_rate", pa.float64()),
        ("max_packet_loss_rate", pa.float64()),
        ("average_audio_degradation", pa.float64()),
        ("average_ratio_of_concealed_samples", pa.float64()),
        ("packet_utilization", pa.int64()),
        ("average_video_frame_rate", pa.float64()),
        ("average_video_frame_loss_percentage", pa.float64()),
        ("post_forward_error_correction_packet_loss_rate", pa.float64()),
        ("was_media_bypassed", pa.bool_()),
        *((f"caller_{name}", kind) for name, kind in _ENDPOINT_FIELDS),
        *((f"callee_{name}", kind) for name, kind in _ENDPOINT_FIELDS),
        ("classification", pa.string()),
        ("poor_reasons", pa.string()),  # comma-separated reason names, empty unless poor
        ("rules", pa.string()),  # the rule set that gave `classification`
    ]
)

PARTICIPANTS = pa.schema(
    [
        ("call_record_id", pa.string()),
        ("version", pa.int64()),
        ("participant_id", pa.string()),
        ("identity_type", pa.string()),
        ("user_id", pa.string()),
        ("display_name", pa.string()),
        ("tenant_id", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"calls": CALLS, "streams": STREAMS, "participants": PARTICIPANTS}

_DURATION_METRICS = {
    "average_jitter_ms": "averageJitter",
    "max_jitter_ms": "maxJitter",
    "average_round_trip_time_ms": "averageRoundTripTime",
    "max_round_trip_time_ms": "maxRoundTripTime",
}
_NUMBER_METRICS = {
    "average_packet_loss_rate": "averagePacketLossRate",
    "max_packet_loss_rate": "maxPacketLossRate",
    "average_audio_degradation": "averageAudioDegradation",
    "average_ratio_of_concealed_samples": "averageRatioOfConcealedSamples",
    "average_video_frame_rate": "averageVideoFrameRate",
    "average_video_frame_loss_percentage": "averageVideoFrameLossPercentage",
    "post_forward_error_correction_packet_loss_rate": "postForwardErrorCorrectionPacketLossRate",
}


@dataclass
class RecordRows:
    """The rows one record contributes to each table."""

    start: datetime  # the call's UTC start: its partition date
    calls: list[Row] = field(default_factory=list[Row])
    streams: list[Row] = field(default_factory=list[Row])
    participants: list[Row] = field(default_factory=list[Row])

    def table(self, name: str) -> list[Row]:
        return {"calls": self.calls, "streams": self.streams, "participants": self.participants}[
            name
        ]


def _dict(value: object) -> Mapping[str, Any]:
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return cast("list[Any]", value) if isinstance(value, list) else []


def _str(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: object) -> datetime | None:
    try:
        return parse_graph_datetime(value) if value else None
    except ValueError:
        return None


def identity_of(identity_set: object) -> tuple[str | None, str | None, str | None, str | None]:
    """(identity type, id, display name, tenant id) of an identitySet: the user if there is
    one, else the first identity present (guest, phone, acsUser, ...)."""
    ids = _dict(identity_set)
    candidates = [("user", ids.get("user"))] + [
        (k, v) for k, v in ids.items() if k != "user" and not k.startswith("@")
    ]
    for kind, value in candidates:
        found = _dict(value)
        if found:
            return (
                kind,
                _str(found.get("id")),
                _str(found.get("displayName")),
                _str(found.get("tenantId")),
            )
    return None, None, None, None


def _endpoint(prefix: str, endpoint: object, network: object, device: object) -> Row:
    ep = _dict(endpoint)
    agent = _dict(ep.get("userAgent"))
    net = _dict(network)
    dev = _dict(device)
    _, uid, name, _ = identity_of(ep.get("identity"))
    return {
        f"{prefix}_user_id": uid,
        f"{prefix}_display_name": name,
        f"{prefix}_platform": _str(agent.get("platform")),
        f"{prefix}_product_family": _str(agent.get("productFamily")),
        f"{prefix}_subnet": _str(net.get("subnet")),
        f"{prefix}_ip_address": _str(net.get("ipAddress")),
        f"{prefix}_connection_type": _str(net.get("connectionType")),
        f"{prefix}_capture_device": _str(dev.get("captureDeviceName")),
        f"{prefix}_render_device": _str(dev.get("renderDeviceName")),
    }


def stream_rows(record: Mapping[str, Any], rules: RuleSet) -> Iterator[Row]:
    """Every media stream of every segment of every session, flattened."""
    rid = _str(record.get("id"))
    version = _int(record.get("version"))
    for session in _list(record.get("sessions")):
        session = _dict(session)
        sid = _str(session.get("id"))
        for segment in _list(session.get("segments")):
            segment = _dict(segment)
            base: Row = {
                "call_record_id": rid,
                "version": version,
                "session_id": sid,
                "segment_id": _str(segment.get("id")),
                "segment_start": _time(segment.get("startDateTime")),
                "segment_end": _time(segment.get("endDateTime")),
            }
            for media in _list(segment.get("media")):
                media = _dict(media)
                label = _str(media.get("label"))
                kind = stream_kind(label)
                sides = {
                    **_endpoint(
                        "caller",
                        segment.get("caller"),
                        media.get("callerNetwork"),
                        media.get("callerDevice"),
                    ),
                    **_endpoint(
                        "callee",
                        segment.get("callee"),
                        media.get("calleeNetwork"),
                        media.get("calleeDevice"),
                    ),
                }
                for stream in _list(media.get("streams")):
                    stream = _dict(stream)
                    metrics: Row = {
                        col: duration_ms_or_none(stream.get(key))
                        for col, key in _DURATION_METRICS.items()
                    }
                    metrics.update(
                        {col: _float(stream.get(key)) for col, key in _NUMBER_METRICS.items()}
                    )
                    metrics["packet_utilization"] = _int(stream.get("packetUtilization"))
                    values = {m.value: metrics.get(m.value) for m in Metric}
                    verdict, reasons = classify(rules, kind, values)
                    yield {
                        **base,
                        "media_label": label,
                        "stream_kind": kind.value,
                        "stream_id": _str(stream.get("streamId")),
                        "stream_direction": _str(stream.get("streamDirection")),
                        **metrics,
                        "was_media_bypassed": _bool(stream.get("wasMediaBypassed")),
                        **sides,
                        "classification": verdict.value,
                        "poor_reasons": ",".join(reasons),
                        "rules": rules.name.value,
                    }


def flatten(record: Mapping[str, Any], rules: RuleSet | None = None) -> RecordRows:
    """The rows of one record (its merged JSON as archived). ValueError when it has no usable
    id or startDateTime (it could not have been archived under a date then)."""
    rules = rules or RULE_SETS[DEFAULT_RULES]
    rid = _str(record.get("id"))
    start = _time(record.get("startDateTime"))
    if not rid or start is None:
        raise ValueError(f"record {rid!r} has no id or no readable startDateTime")
    version = _int(record.get("version"))
    end = _time(record.get("endDateTime"))
    rows = RecordRows(start)
    rows.streams = list(stream_rows(record, rules))
    for entry in _list(record.get("participants_v2")):
        entry = _dict(entry)
        kind, uid, name, tenant = identity_of(entry.get("identity"))
        rows.participants.append(
            {
                "call_record_id": rid,
                "version": version,
                "participant_id": _str(entry.get("id")),
                "identity_type": kind,
                "user_id": uid if kind == "user" else None,
                "display_name": name,
                "tenant_id": tenant,
            }
        )
    organizer = _dict(record.get("organizer_v2"))
    _, org_id, org_name, _ = identity_of(organizer.get("identity"))
    sessions = [_dict(s) for s in _list(record.get("sessions"))]
    classified = [s for s in rows.streams if s["classification"] != Classification.UNCLASSIFIED]
    rows.calls.append(
        {
            "call_record_id": rid,
            "version": version,
            "call_type": _str(record.get("type")),
            "modalities": ",".join(str(m) for m in _list(record.get("modalities"))),
            "start_time": start,
            "end_time": end,
            "last_modified_time": _time(record.get("lastModifiedDateTime")),
            "duration_s": (end - start).total_seconds() if end else None,
            "organizer_user_id": org_id or _str(organizer.get("id")),
            "organizer_display_name": org_name,
            "session_count": len(sessions),
            "segment_count": sum(len(_list(s.get("segments"))) for s in sessions),
            "participant_count": len(rows.participants),
            "stream_count": len(rows.streams),
            "classified_stream_count": len(classified),
            "poor_stream_count": sum(
                1 for s in classified if s["classification"] == Classification.POOR
            ),
        }
    )
    return rows
