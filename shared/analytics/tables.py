"""One archived record -> rows of the three analysis tables, and their Parquet schemas.

Tables (Hive-partitioned by the call's UTC start date, ``{table}/date=YYYY-MM-DD/``):

- ``calls``: one row per record;
- ``streams``: one row per media stream of every segment of every session, with the endpoint
  facts of the segment's caller and callee and the stream's classification;
- ``segments``: one row per segment of every session, with its reliability (a setup failure
  or a drop, from ``failureInfo``), the call's scenario and the endpoints' networks;
- ``participants``: one row per ``participants_v2`` entry.

Field names and meanings: learn.microsoft.com/graph/api/resources/callrecords-callrecord,
callrecords-segment, callrecords-media, callrecords-mediastream, callrecords-networkinfo,
callrecords-deviceinfo, callrecords-failureinfo, callrecords-participantendpoint and
callrecords-serviceendpoint. Graph's durations (``PT0.016S``)
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
    EndpointKind,
    FailureStage,
    Metric,
    RuleSet,
    Scenario,
    classify,
    endpoint_pair,
    network_class,
    scenario_of,
    stream_kind,
)
from shared.clock import parse_graph_datetime

# Bumped when a schema or the meaning of a column changes: every day is then rebuilt.
# 2: the segments table; user ids hold user ids only (identity_type / identity_id beside them);
# endpoint kind, Wi-Fi band, network class, scenario and failure stage columns.
TABLES_VERSION = "2"

Row = dict[str, Any]
_TS = pa.timestamp("us", tz="UTC")

# Per side of a segment (caller_ / callee_). user_id is a user's id only, as in participants:
# a phone number, application or device identity is in identity_type / identity_id instead,
# so a join on user id never meets a phone number.
_SIDE_FIELDS = (
    ("user_id", pa.string()),
    ("identity_type", pa.string()),
    ("identity_id", pa.string()),
    ("display_name", pa.string()),
    ("endpoint", pa.string()),  # client (participantEndpoint) or server (serviceEndpoint)
    ("platform", pa.string()),
    ("product_family", pa.string()),
    ("subnet", pa.string()),
    ("ip_address", pa.string()),
    ("connection_type", pa.string()),
    ("wifi_band", pa.string()),
    ("network", pa.string()),  # wired, wifi-5ghz, wifi-2.4ghz, other (rules.network_class)
)
_ENDPOINT_FIELDS = (
    *_SIDE_FIELDS,
    ("capture_device", pa.string()),
    ("render_device", pa.string()),
)
# Where a segment stands, on every row of streams and segments: the report's breakdowns group
# both tables by the same columns.
_CONTEXT_FIELDS = (
    ("call_type", pa.string()),
    ("scenario", pa.string()),  # conference, peer-to-peer (rules.scenario_of)
    ("endpoints", pa.string()),  # server-client, client-client, ... (rules.endpoint_pair)
    ("failure_stage", pa.string()),  # the segment's failureInfo.stage, else its session's
)

# The columns that name one segment of one record version, first in the per-segment tables.
_SEGMENT_KEY_FIELDS = (
    ("call_record_id", pa.string()),
    ("version", pa.int64()),
    ("session_id", pa.string()),
    ("segment_id", pa.string()),
    ("segment_start", _TS),
    ("segment_end", _TS),
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
        ("setup_failure_count", pa.int64()),  # segments that failed to set up
        ("drop_count", pa.int64()),  # segments that set up and then dropped
    ]
)

STREAMS = pa.schema(
    [
        *_SEGMENT_KEY_FIELDS,
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
        *_CONTEXT_FIELDS,
        *((f"caller_{name}", kind) for name, kind in _ENDPOINT_FIELDS),
        *((f"callee_{name}", kind) for name, kind in _ENDPOINT_FIELDS),
        ("classification", pa.string()),
        ("poor_reasons", pa.string()),  # comma-separated reason names, empty unless poor
        ("rules", pa.string()),  # the rule set that gave `classification`
    ]
)

SEGMENTS = pa.schema(
    [
        *_SEGMENT_KEY_FIELDS,
        *_CONTEXT_FIELDS,
        ("failure_reason", pa.string()),
        ("failure_from", pa.string()),  # segment or session: whose failureInfo counted
        ("setup_failed", pa.bool_()),  # failure stage callSetup
        ("dropped", pa.bool_()),  # failure stage midcall
        ("stream_count", pa.int64()),
        *((f"caller_{name}", kind) for name, kind in _SIDE_FIELDS),
        *((f"callee_{name}", kind) for name, kind in _SIDE_FIELDS),
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

SCHEMAS: dict[str, pa.Schema] = {
    "calls": CALLS,
    "streams": STREAMS,
    "segments": SEGMENTS,
    "participants": PARTICIPANTS,
}

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
    segments: list[Row] = field(default_factory=list[Row])
    participants: list[Row] = field(default_factory=list[Row])

    def table(self, name: str) -> list[Row]:
        return {
            "calls": self.calls,
            "streams": self.streams,
            "segments": self.segments,
            "participants": self.participants,
        }[name]


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


_ENDPOINT_TYPES = {
    "#microsoft.graph.callrecords.participantendpoint": EndpointKind.CLIENT,
    "#microsoft.graph.callrecords.serviceendpoint": EndpointKind.SERVER,
}


def _side(prefix: str, endpoint: object, network: object) -> Row:
    """The identity, endpoint kind and network of one side of a segment."""
    ep = _dict(endpoint)
    agent = _dict(ep.get("userAgent"))
    net = _dict(network)
    kind, uid, name, _ = identity_of(ep.get("identity"))
    endpoint_kind = _ENDPOINT_TYPES.get(str(ep.get("@odata.type") or "").lower())
    connection, band = _str(net.get("connectionType")), _str(net.get("wifiBand"))
    return {
        f"{prefix}_user_id": uid if kind == "user" else None,
        f"{prefix}_identity_type": kind,
        f"{prefix}_identity_id": uid,
        f"{prefix}_display_name": name,
        f"{prefix}_endpoint": endpoint_kind.value if endpoint_kind else None,
        f"{prefix}_platform": _str(agent.get("platform")),
        f"{prefix}_product_family": _str(agent.get("productFamily")),
        f"{prefix}_subnet": _str(net.get("subnet")),
        f"{prefix}_ip_address": _str(net.get("ipAddress")),
        f"{prefix}_connection_type": connection,
        f"{prefix}_wifi_band": band,
        f"{prefix}_network": network_class(connection, band).value,
    }


def _endpoint(prefix: str, endpoint: object, network: object, device: object) -> Row:
    dev = _dict(device)
    return {
        **_side(prefix, endpoint, network),
        f"{prefix}_capture_device": _str(dev.get("captureDeviceName")),
        f"{prefix}_render_device": _str(dev.get("renderDeviceName")),
    }


def _failure(segment: Mapping[str, Any], session: Mapping[str, Any]) -> tuple[Row, str | None]:
    """The segment's failureInfo, else its session's (a session's failure counts for the
    segments that carry none): (columns, whose it was)."""
    for source, owner in (("segment", segment), ("session", session)):
        info = _dict(owner.get("failureInfo"))
        stage = _str(info.get("stage"))
        if stage:
            return {"failure_stage": stage, "failure_reason": _str(info.get("reason"))}, source
    return {"failure_stage": None, "failure_reason": None}, None


def _segment_network(segment: Mapping[str, Any], side: str) -> object:
    """One side's networkInfo for the segment as a whole: its audio's, else the first media's
    that has one (a segment that failed to set up may have no media at all)."""
    media = [_dict(m) for m in _list(segment.get("media"))]
    media.sort(key=lambda m: stream_kind(m.get("label")).value != "audio")
    return next((m.get(f"{side}Network") for m in media if m.get(f"{side}Network")), None)


def segment_and_stream_rows(
    record: Mapping[str, Any], rules: RuleSet
) -> Iterator[tuple[Row, list[Row]]]:
    """(segment row, its stream rows) for every segment of every session."""
    rid = _str(record.get("id"))
    version = _int(record.get("version"))
    call_type = _str(record.get("type"))
    scenario: Scenario = scenario_of(call_type)
    for session in _list(record.get("sessions")):
        session = _dict(session)
        sid = _str(session.get("id"))
        for segment in _list(session.get("segments")):
            segment = _dict(segment)
            failure, failure_from = _failure(segment, session)
            stage = failure["failure_stage"]
            caller = _side("caller", segment.get("caller"), _segment_network(segment, "caller"))
            callee = _side("callee", segment.get("callee"), _segment_network(segment, "callee"))
            context: Row = {
                "call_type": call_type,
                "scenario": scenario.value,
                "endpoints": endpoint_pair(
                    caller["caller_endpoint"], callee["callee_endpoint"]
                ).value,
                "failure_stage": stage,
            }
            base: Row = {
                "call_record_id": rid,
                "version": version,
                "session_id": sid,
                "segment_id": _str(segment.get("id")),
                "segment_start": _time(segment.get("startDateTime")),
                "segment_end": _time(segment.get("endDateTime")),
            }
            streams = list(_stream_rows(segment, {**base, **context}, rules))
            yield (
                {
                    **base,
                    **context,
                    "failure_reason": failure["failure_reason"],
                    "failure_from": failure_from,
                    "setup_failed": stage == FailureStage.CALL_SETUP,
                    "dropped": stage == FailureStage.MIDCALL,
                    "stream_count": len(streams),
                    **caller,
                    **callee,
                },
                streams,
            )


def _stream_rows(segment: Mapping[str, Any], base: Row, rules: RuleSet) -> Iterator[Row]:
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
                col: duration_ms_or_none(stream.get(key)) for col, key in _DURATION_METRICS.items()
            }
            metrics.update({col: _float(stream.get(key)) for col, key in _NUMBER_METRICS.items()})
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


def stream_rows(record: Mapping[str, Any], rules: RuleSet) -> Iterator[Row]:
    """Every media stream of every segment of every session, flattened."""
    for _, streams in segment_and_stream_rows(record, rules):
        yield from streams


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
    for segment, streams in segment_and_stream_rows(record, rules):
        rows.segments.append(segment)
        rows.streams.extend(streams)
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
            "segment_count": len(rows.segments),
            "participant_count": len(rows.participants),
            "stream_count": len(rows.streams),
            "classified_stream_count": len(classified),
            "poor_stream_count": sum(
                1 for s in classified if s["classification"] == Classification.POOR
            ),
            "setup_failure_count": sum(1 for g in rows.segments if g["setup_failed"]),
            "drop_count": sum(1 for g in rows.segments if g["dropped"]),
        }
    )
    return rows
