"""Stream classification: Microsoft's Call Quality Dashboard (CQD) rules, as small tables.

A stream is ``good``, ``poor`` or ``unclassified`` (none of the metrics its classifier reads
was reported: left out of every rate). Each rule set is one table below, with the page it comes
from; the Python classifier and the SQL one the report runs are both generated from it, so they
cannot disagree.

- ``cqd`` (default): learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-dashboard
  as published now. Audio is poor when packet utilization > 500 packets and any of round trip
  > 500 ms, packet loss rate > 0.1, jitter > 30 ms. Video and video-based screen sharing (VBSS)
  are decided by the first metric present, in order: frame loss > 50 %, frame rate < 7 fps
  (VBSS: < 2), post-FEC packet loss rate > 0.15.
- ``classic``: the earlier revision of that page and the Quality of Experience Review guide
  (learn.microsoft.com/microsoftteams/quality-of-experience-review-guide, "Audio poor quality
  metrics"): no packet-utilization gate, and two more audio conditions, audio degradation
  (NMOS) > 1.0 and concealed samples ratio > 0.07. Video and VBSS as ``cqd``.

The kind of stream comes from Graph's media ``label``
(learn.microsoft.com/graph/api/resources/callrecords-media): ``main-audio``, ``main-video``,
``applicationsharing-video`` (video-based screen sharing). CQD's application-sharing (RDP)
classifier reads metrics Graph does not publish, so other labels stay unclassified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

CQD_PAGE = (
    "https://learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-dashboard"
)
QER_PAGE = "https://learn.microsoft.com/microsoftteams/quality-of-experience-review-guide"
# Microsoft's suggested target for the audio poor stream rate, all networks (QER guide,
# "Define your target metrics"): 3.0 % overall, 2.0 % on internal networks.
AUDIO_POOR_RATE_TARGET = 0.03


class Measure(StrEnum):
    POOR = "poor_rate"  # audio poor stream rate
    SETUP = "setup_failure_rate"
    DROP = "drop_failure_rate"


@dataclass(frozen=True)
class Targets:
    """The QER guide's suggested targets ("Define your target metrics", network type All):
    a rate at or below its target meets it."""

    poor_rate: float
    setup_failure_rate: float
    drop_failure_rate: float

    def of(self, measure: Measure) -> float:
        return float(getattr(self, measure.value))

    def met(self, measure: Measure, rate: float | None) -> bool | None:
        return None if rate is None else rate <= self.of(measure)


TARGETS_OVERALL = Targets(AUDIO_POOR_RATE_TARGET, 0.01, 0.03)
TARGETS_INSIDE = Targets(0.02, 0.005, 0.02)  # "Internal": inside the corporate network


class FailureStage(StrEnum):
    """failureInfo.stage (learn.microsoft.com/graph/api/resources/callrecords-failureinfo)."""

    CALL_SETUP = "callSetup"
    MIDCALL = "midcall"
    UNKNOWN = "unknown"


class EndpointKind(StrEnum):
    CLIENT = "client"  # participantEndpoint
    SERVER = "server"  # serviceEndpoint (a conference server, a media relay, ...)


class EndpointPair(StrEnum):
    SERVER_CLIENT = "server-client"
    CLIENT_CLIENT = "client-client"
    SERVER_SERVER = "server-server"
    UNKNOWN = "unknown"


class Scenario(StrEnum):
    CONFERENCE = "conference"  # callRecord type groupCall
    PEER_TO_PEER = "peer-to-peer"  # callRecord type peerToPeer
    UNKNOWN = "unknown"


class NetworkClass(StrEnum):
    """The QER guide's network types, from networkInfo's connectionType and wifiBand
    (learn.microsoft.com/graph/api/resources/callrecords-networkinfo)."""

    WIRED = "wired"
    WIFI_5GHZ = "wifi-5ghz"
    WIFI_24GHZ = "wifi-2.4ghz"
    OTHER = "other"  # mobile, tunnel, Wi-Fi of unknown or other band, not reported


def network_class(connection_type: str | None, wifi_band: str | None) -> NetworkClass:
    connection = (connection_type or "").lower()
    band = (wifi_band or "").lower()
    if connection == "wired":
        return NetworkClass.WIRED
    if connection == "wifi" and band == "frequency50ghz":
        return NetworkClass.WIFI_5GHZ
    if connection == "wifi" and band == "frequency24ghz":
        return NetworkClass.WIFI_24GHZ
    return NetworkClass.OTHER


def scenario_of(call_type: str | None) -> Scenario:
    return {"groupcall": Scenario.CONFERENCE, "peertopeer": Scenario.PEER_TO_PEER}.get(
        (call_type or "").lower(), Scenario.UNKNOWN
    )


def endpoint_pair(caller: str | None, callee: str | None) -> EndpointPair:
    sides = {caller, callee}
    if None in sides:
        return EndpointPair.UNKNOWN
    if sides == {EndpointKind.CLIENT}:
        return EndpointPair.CLIENT_CLIENT
    if sides == {EndpointKind.SERVER}:
        return EndpointPair.SERVER_SERVER
    return EndpointPair.SERVER_CLIENT


class Dialect(StrEnum):
    """The SQL engines the rule and report SQL is generated for."""

    DUCKDB = "duckdb"
    SPARK = "spark"  # Spark SQL: Fabric, Synapse Spark pools, Databricks


class StreamKind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"
    VBSS = "vbss"
    OTHER = "other"


class Classification(StrEnum):
    GOOD = "good"
    POOR = "poor"
    UNCLASSIFIED = "unclassified"


class RuleSetName(StrEnum):
    CQD = "cqd"
    CLASSIC = "classic"


class Metric(StrEnum):
    """Stream metrics the rules read: the streams table's column names (milliseconds for
    Graph's durations)."""

    ROUND_TRIP = "average_round_trip_time_ms"
    PACKET_LOSS = "average_packet_loss_rate"
    JITTER = "average_jitter_ms"
    AUDIO_DEGRADATION = "average_audio_degradation"
    CONCEALED_SAMPLES = "average_ratio_of_concealed_samples"
    PACKET_UTILIZATION = "packet_utilization"
    FRAME_LOSS = "average_video_frame_loss_percentage"
    FRAME_RATE = "average_video_frame_rate"
    POST_FEC_LOSS = "post_forward_error_correction_packet_loss_rate"


class Mode(StrEnum):
    ANY = "any"  # poor if any condition holds (audio)
    FIRST_PRESENT = "first_present"  # the first metric reported decides (video, VBSS)


@dataclass(frozen=True)
class Condition:
    """``metric > threshold`` (or ``<``): true means poor. ``reason`` names it in poor_reasons."""

    metric: Metric
    op: str  # ">" or "<"
    threshold: float
    reason: str

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return value > self.threshold if self.op == ">" else value < self.threshold

    def sql(self) -> str:
        return f"({self.metric.value} {self.op} {self.threshold!r})"

    def kql(self) -> str:
        return f"({self.metric.value} {self.op} {self.threshold!r})"


@dataclass(frozen=True)
class Classifier:
    mode: Mode
    conditions: tuple[Condition, ...]
    gate: Condition | None = None  # must also hold for poor (the same sense: true = gate open)


@dataclass(frozen=True)
class RuleSet:
    name: RuleSetName
    source: str
    classifiers: Mapping[StreamKind, Classifier]


def _c(metric: Metric, op: str, threshold: float, reason: str) -> Condition:
    return Condition(metric, op, threshold, reason)


_RTT = _c(Metric.ROUND_TRIP, ">", 500, "round_trip")
_LOSS = _c(Metric.PACKET_LOSS, ">", 0.1, "packet_loss")
_JITTER = _c(Metric.JITTER, ">", 30, "jitter")
_UTILIZATION = _c(Metric.PACKET_UTILIZATION, ">", 500, "packet_utilization")
_DEGRADATION = _c(Metric.AUDIO_DEGRADATION, ">", 1.0, "audio_degradation")
_CONCEALED = _c(Metric.CONCEALED_SAMPLES, ">", 0.07, "concealed_samples")
_FRAME_LOSS = _c(Metric.FRAME_LOSS, ">", 50, "frame_loss")
_POST_FEC = _c(Metric.POST_FEC_LOSS, ">", 0.15, "post_fec_packet_loss")

_VIDEO = Classifier(
    Mode.FIRST_PRESENT, (_FRAME_LOSS, _c(Metric.FRAME_RATE, "<", 7, "frame_rate"), _POST_FEC)
)
_VBSS = Classifier(
    Mode.FIRST_PRESENT, (_FRAME_LOSS, _c(Metric.FRAME_RATE, "<", 2, "frame_rate"), _POST_FEC)
)

RULE_SETS: dict[RuleSetName, RuleSet] = {
    RuleSetName.CQD: RuleSet(
        RuleSetName.CQD,
        CQD_PAGE,
        {
            StreamKind.AUDIO: Classifier(Mode.ANY, (_RTT, _LOSS, _JITTER), gate=_UTILIZATION),
            StreamKind.VIDEO: _VIDEO,
            StreamKind.VBSS: _VBSS,
        },
    ),
    RuleSetName.CLASSIC: RuleSet(
        RuleSetName.CLASSIC,
        f"{CQD_PAGE} (earlier revision); {QER_PAGE}",
        {
            StreamKind.AUDIO: Classifier(
                Mode.ANY, (_DEGRADATION, _RTT, _LOSS, _JITTER, _CONCEALED)
            ),
            StreamKind.VIDEO: _VIDEO,
            StreamKind.VBSS: _VBSS,
        },
    ),
}
DEFAULT_RULES = RuleSetName.CQD

_LABELS = {
    "main-audio": StreamKind.AUDIO,
    "main-video": StreamKind.VIDEO,
    "applicationsharing-video": StreamKind.VBSS,
}


def stream_kind(label: object) -> StreamKind:
    """The kind of stream from Graph's media label (case-insensitive)."""
    return _LABELS.get(str(label or "").strip().lower(), StreamKind.OTHER)


def classify(
    rules: RuleSet, kind: StreamKind, metrics: Mapping[str, float | None]
) -> tuple[Classification, tuple[str, ...]]:
    """(classification, the reasons it is poor) of one stream; metrics by Metric name."""
    classifier = rules.classifiers.get(kind)
    if classifier is None:
        return Classification.UNCLASSIFIED, ()
    if classifier.mode is Mode.FIRST_PRESENT:
        for condition in classifier.conditions:
            value = metrics.get(condition.metric)
            if value is not None:
                if condition.holds(value):
                    return Classification.POOR, (condition.reason,)
                return Classification.GOOD, ()
        return Classification.UNCLASSIFIED, ()
    if all(metrics.get(c.metric) is None for c in classifier.conditions):
        return Classification.UNCLASSIFIED, ()
    reasons = tuple(c.reason for c in classifier.conditions if c.holds(metrics.get(c.metric)))
    gate_open = classifier.gate is None or classifier.gate.holds(
        metrics.get(classifier.gate.metric)
    )
    if reasons and gate_open:
        return Classification.POOR, reasons
    return Classification.GOOD, ()


def classification_sql(rules: RuleSet, kind_column: str = "stream_kind") -> str:
    """A SQL CASE expression (DuckDB, Spark SQL, Synapse) giving each streams-table row its
    classification under ``rules``: the same logic as classify(), from the same table. The
    expression is standard SQL, the same text for every Dialect."""
    branches: list[str] = []
    for kind, classifier in rules.classifiers.items():
        if classifier.mode is Mode.FIRST_PRESENT:
            steps = " ".join(
                f"WHEN {c.metric.value} IS NOT NULL THEN "
                f"CASE WHEN {c.sql()} THEN 'poor' ELSE 'good' END"
                for c in classifier.conditions
            )
            body = f"CASE {steps} ELSE 'unclassified' END"
        else:
            none = " AND ".join(f"{c.metric.value} IS NULL" for c in classifier.conditions)
            anyof = " OR ".join(f"COALESCE({c.sql()}, FALSE)" for c in classifier.conditions)
            gate = f"COALESCE({classifier.gate.sql()}, FALSE) AND " if classifier.gate else ""
            body = (
                f"CASE WHEN {none} THEN 'unclassified' "
                f"WHEN {gate}({anyof}) THEN 'poor' ELSE 'good' END"
            )
        branches.append(f"WHEN {kind_column} = '{kind.value}' THEN {body}")
    return f"CASE {' '.join(branches)} ELSE 'unclassified' END"


def reasons(rules: RuleSet) -> list[str]:
    """Every reason name the rule set can give, in table order."""
    found: dict[str, None] = {}
    for classifier in rules.classifiers.values():
        for condition in classifier.conditions:
            found[condition.reason] = None
    return list(found)


def _reason_branches(rules: RuleSet, reason: str) -> list[tuple[StreamKind, list[str], str]]:
    """(kind, metrics that must be absent, condition) for each way ``reason`` can make a
    stream poor: under FIRST_PRESENT the metrics before the deciding one are absent."""
    out: list[tuple[StreamKind, list[str], str]] = []
    for kind, classifier in rules.classifiers.items():
        for n, condition in enumerate(classifier.conditions):
            if condition.reason != reason:
                continue
            before = (
                [c.metric.value for c in classifier.conditions[:n]]
                if classifier.mode is Mode.FIRST_PRESENT
                else []
            )
            out.append((kind, before, condition.sql()))
    return out


def poor_due_to_sql(rules: RuleSet, reason: str, kind_column: str = "stream_kind") -> str:
    """A SQL boolean: a poor stream (``cls = 'poor'``) is poor due to ``reason`` (CQD's "Poor
    due to" measures): the same reasons classify() gives. A stream can be poor due to more
    than one audio metric."""
    branches = [
        "("
        + " AND ".join([f"{kind_column} = '{kind.value}'", *(f"{m} IS NULL" for m in before), cond])
        + ")"
        for kind, before, cond in _reason_branches(rules, reason)
    ]
    return f"(cls = 'poor' AND ({' OR '.join(branches) or 'FALSE'}))"


def classification_kql(rules: RuleSet, kind_column: str = "stream_kind") -> str:
    """The same classification as a Kusto (Data Explorer) case() expression."""
    branches: list[str] = []
    for kind, classifier in rules.classifiers.items():
        if classifier.mode is Mode.FIRST_PRESENT:
            body = "case(" + ", ".join(
                f"isnotnull({c.metric.value}), iff({c.kql()}, 'poor', 'good')"
                for c in classifier.conditions
            )
            body += ", 'unclassified')"
        else:
            none = " and ".join(f"isnull({c.metric.value})" for c in classifier.conditions)
            anyof = " or ".join(
                f"({c.kql()} and isnotnull({c.metric.value}))" for c in classifier.conditions
            )
            gate = ""
            if classifier.gate:
                g = classifier.gate
                gate = f"isnotnull({g.metric.value}) and {g.kql()} and "
            body = f"case({none}, 'unclassified', {gate}({anyof}), 'poor', 'good')"
        branches.append(f"{kind_column} == '{kind.value}', {body}")
    return f"case({', '.join(branches)}, 'unclassified')"


def poor_due_to_kql(rules: RuleSet, reason: str, kind_column: str = "stream_kind") -> str:
    branches = [
        "("
        + " and ".join(
            [
                f"{kind_column} == '{kind.value}'",
                *(f"isnull({m})" for m in before),
                cond,
            ]
        )
        + ")"
        for kind, before, cond in _reason_branches(rules, reason)
    ]
    return f"(cls == 'poor' and ({' or '.join(branches) or 'false'}))"


def kql_functions(rules: RuleSet, table: str = "CallStreams") -> str:
    """Data Explorer functions over the streams external table (docs/analytics.md), from the
    same rule table: ``CallStreamsClassified`` adds ``cls`` and one ``poor_due_to_*`` column
    per reason."""
    due = ",\n        ".join(
        f"poor_due_to_{r} = {poor_due_to_kql(rules, r)}" for r in reasons(rules)
    )
    return (
        f".create-or-alter function with (docstring = 'Streams classified by the "
        f"{rules.name.value} rules ({rules.source})')\n"
        f"{table}Classified() {{\n"
        f"    external_table('{table}')\n"
        f"    | extend cls = {classification_kql(rules)}\n"
        f"    | extend {due}\n"
        "}\n"
    )
