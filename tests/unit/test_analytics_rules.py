"""Stream classification on each side of every threshold, for both rule sets; the SQL the
report runs against the same hand-made streams; ISO 8601 durations; CQD's building file."""

from __future__ import annotations

import math

import duckdb
import pyarrow as pa
import pytest

from callrecords.analytics.buildings import BuildingFileError, parse_buildings
from shared.analytics.durations import duration_ms, duration_ms_or_none
from shared.analytics.rules import (
    RULE_SETS,
    TARGETS_INSIDE,
    TARGETS_OVERALL,
    Classification,
    EndpointPair,
    Measure,
    NetworkClass,
    RuleSetName,
    Scenario,
    StreamKind,
    classification_sql,
    classify,
    endpoint_pair,
    kql_functions,
    network_class,
    poor_due_to_sql,
    reasons,
    scenario_of,
    stream_kind,
)
from shared.analytics.tables import STREAMS, flatten

CQD = RULE_SETS[RuleSetName.CQD]
CLASSIC = RULE_SETS[RuleSetName.CLASSIC]
GOOD, POOR, UNCLASSIFIED = Classification.GOOD, Classification.POOR, Classification.UNCLASSIFIED

# A healthy audio stream with enough packets for CQD's gate; each case changes one metric.
AUDIO = {
    "average_round_trip_time_ms": 80.0,
    "average_packet_loss_rate": 0.01,
    "average_jitter_ms": 10.0,
    "average_audio_degradation": 0.3,
    "average_ratio_of_concealed_samples": 0.02,
    "packet_utilization": 3000,
}

# (name, kind, metrics, expected under cqd, expected under classic)
CASES: list[tuple[str, StreamKind, dict[str, float | None], Classification, Classification]] = [
    ("healthy audio", StreamKind.AUDIO, {}, GOOD, GOOD),
    ("round trip 500", StreamKind.AUDIO, {"average_round_trip_time_ms": 500.0}, GOOD, GOOD),
    ("round trip 500.1", StreamKind.AUDIO, {"average_round_trip_time_ms": 500.1}, POOR, POOR),
    ("loss 0.1", StreamKind.AUDIO, {"average_packet_loss_rate": 0.1}, GOOD, GOOD),
    ("loss 0.1001", StreamKind.AUDIO, {"average_packet_loss_rate": 0.1001}, POOR, POOR),
    ("jitter 30", StreamKind.AUDIO, {"average_jitter_ms": 30.0}, GOOD, GOOD),
    ("jitter 30.5", StreamKind.AUDIO, {"average_jitter_ms": 30.5}, POOR, POOR),
    ("degradation 1.0", StreamKind.AUDIO, {"average_audio_degradation": 1.0}, GOOD, GOOD),
    ("degradation 1.01", StreamKind.AUDIO, {"average_audio_degradation": 1.01}, GOOD, POOR),
    ("concealed 0.07", StreamKind.AUDIO, {"average_ratio_of_concealed_samples": 0.07}, GOOD, GOOD),
    (
        "concealed 0.0701",
        StreamKind.AUDIO,
        {"average_ratio_of_concealed_samples": 0.0701},
        GOOD,
        POOR,
    ),
    # CQD's gate: poor metrics count only above 500 packets; classic has no gate
    (
        "jitter 31, 500 packets",
        StreamKind.AUDIO,
        {"average_jitter_ms": 31.0, "packet_utilization": 500},
        GOOD,
        POOR,
    ),
    (
        "jitter 31, 501 packets",
        StreamKind.AUDIO,
        {"average_jitter_ms": 31.0, "packet_utilization": 501},
        POOR,
        POOR,
    ),
    (
        "jitter 31, packets not reported",
        StreamKind.AUDIO,
        {"average_jitter_ms": 31.0, "packet_utilization": None},
        GOOD,
        POOR,
    ),
    (
        "no audio metric",
        StreamKind.AUDIO,
        dict.fromkeys(AUDIO),
        UNCLASSIFIED,
        UNCLASSIFIED,
    ),
    (
        "only degradation reported, 1.5",
        StreamKind.AUDIO,
        {
            **dict.fromkeys(AUDIO),
            "average_audio_degradation": 1.5,
            "packet_utilization": 3000,
        },
        UNCLASSIFIED,  # none of cqd's three metrics: unclassified
        POOR,
    ),
    # video: the first metric present decides
    (
        "video frame loss 50",
        StreamKind.VIDEO,
        {"average_video_frame_loss_percentage": 50.0},
        GOOD,
        GOOD,
    ),
    (
        "video frame loss 50.1",
        StreamKind.VIDEO,
        {"average_video_frame_loss_percentage": 50.1},
        POOR,
        POOR,
    ),
    (
        "video frame loss decides before a bad frame rate",
        StreamKind.VIDEO,
        {"average_video_frame_loss_percentage": 10.0, "average_video_frame_rate": 1.0},
        GOOD,
        GOOD,
    ),
    ("video frame rate 7", StreamKind.VIDEO, {"average_video_frame_rate": 7.0}, GOOD, GOOD),
    ("video frame rate 6.9", StreamKind.VIDEO, {"average_video_frame_rate": 6.9}, POOR, POOR),
    (
        "video frame rate decides before post-FEC loss",
        StreamKind.VIDEO,
        {"average_video_frame_rate": 20.0, "post_forward_error_correction_packet_loss_rate": 0.5},
        GOOD,
        GOOD,
    ),
    (
        "video post-FEC 0.15",
        StreamKind.VIDEO,
        {"post_forward_error_correction_packet_loss_rate": 0.15},
        GOOD,
        GOOD,
    ),
    (
        "video post-FEC 0.151",
        StreamKind.VIDEO,
        {"post_forward_error_correction_packet_loss_rate": 0.151},
        POOR,
        POOR,
    ),
    ("video with no metric", StreamKind.VIDEO, {}, UNCLASSIFIED, UNCLASSIFIED),
    # screen sharing (VBSS): frame rate below 2
    ("vbss frame rate 2", StreamKind.VBSS, {"average_video_frame_rate": 2.0}, GOOD, GOOD),
    ("vbss frame rate 1.9", StreamKind.VBSS, {"average_video_frame_rate": 1.9}, POOR, POOR),
    (
        "vbss frame rate 6 (poor for video)",
        StreamKind.VBSS,
        {"average_video_frame_rate": 6.0},
        GOOD,
        GOOD,
    ),
    (
        "vbss frame loss 51",
        StreamKind.VBSS,
        {"average_video_frame_loss_percentage": 51.0},
        POOR,
        POOR,
    ),
    (
        "vbss post-FEC 0.2",
        StreamKind.VBSS,
        {"post_forward_error_correction_packet_loss_rate": 0.2},
        POOR,
        POOR,
    ),
    ("vbss with no metric", StreamKind.VBSS, {}, UNCLASSIFIED, UNCLASSIFIED),
    ("other label", StreamKind.OTHER, {"average_jitter_ms": 99.0}, UNCLASSIFIED, UNCLASSIFIED),
]


def metrics_of(kind: StreamKind, changes: dict[str, float | None]) -> dict[str, float | None]:
    base: dict[str, float | None] = dict(AUDIO) if kind is StreamKind.AUDIO else {}
    return {**base, **changes}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_side_of_every_threshold(case) -> None:
    _, kind, changes, expected_cqd, expected_classic = case
    metrics = metrics_of(kind, changes)
    assert classify(CQD, kind, metrics)[0] is expected_cqd
    assert classify(CLASSIC, kind, metrics)[0] is expected_classic


def test_poor_reasons_name_every_condition_that_held() -> None:
    metrics = {**AUDIO, "average_jitter_ms": 45.0, "average_round_trip_time_ms": 900.0}
    assert classify(CQD, StreamKind.AUDIO, metrics) == (POOR, ("round_trip", "jitter"))
    assert classify(CQD, StreamKind.AUDIO, AUDIO) == (GOOD, ())
    video = {"average_video_frame_rate": 3.0}
    assert classify(CQD, StreamKind.VIDEO, video) == (POOR, ("frame_rate",))


def test_every_rule_set_cites_its_page() -> None:
    for rules in RULE_SETS.values():
        assert "learn.microsoft.com/microsoftteams/" in rules.source
        assert set(rules.classifiers) == {StreamKind.AUDIO, StreamKind.VIDEO, StreamKind.VBSS}


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("main-audio", StreamKind.AUDIO),
        ("Main-Video", StreamKind.VIDEO),
        ("applicationsharing-video", StreamKind.VBSS),
        ("data", StreamKind.OTHER),
        (None, StreamKind.OTHER),
    ],
)
def test_kind_from_media_label(label: str | None, kind: StreamKind) -> None:
    assert stream_kind(label) is kind


@pytest.mark.parametrize("rules_name", list(RuleSetName))
def test_sql_classification_agrees_with_python(rules_name: RuleSetName) -> None:
    """The report classifies in SQL: DuckDB over the same cases gives the same answers."""
    rules = RULE_SETS[rules_name]
    rows = []
    for _, kind, changes, _, _ in CASES:
        row = dict.fromkeys(STREAMS.names)
        row.update(metrics_of(kind, changes))
        row["stream_kind"] = kind.value
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=STREAMS)
    con = duckdb.connect()
    con.register("streams", table)
    got = [r[0] for r in con.execute(f"SELECT {classification_sql(rules)} FROM streams").fetchall()]  # noqa: S608
    expected = [
        classify(rules, kind, metrics_of(kind, changes))[0].value
        for _, kind, changes, _, _ in CASES
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("PT0.03S", 30.0),
        ("PT0.016S", 16.0),
        ("PT0.007S", 7.0),
        ("PT1S", 1000.0),
        ("PT1M2.5S", 62_500.0),
        ("PT2H", 7_200_000.0),
        ("P1DT2H", 93_600_000.0),
        ("P1D", 86_400_000.0),
        ("PT0S", 0.0),
        ("pt0.5s", 500.0),
        ("-PT0.25S", -250.0),
    ],
)
def test_iso_durations(text: str, ms: float) -> None:
    assert math.isclose(duration_ms(text), ms, abs_tol=1e-9)


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1Y", "P1M", "PT0.03", "0.03S", "PTS", "PT1.S", "30"]
)
def test_iso_durations_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        duration_ms(text)
    assert duration_ms_or_none(text) is None


def test_durations_absent_or_not_text_are_none() -> None:
    assert duration_ms_or_none(None) is None
    assert duration_ms_or_none(0.03) is None
    assert duration_ms_or_none({"S": 1}) is None


def test_building_file_longest_prefix_wins() -> None:
    text = (
        "10.10.0.0,HQ/all,16,HQ,Contoso,Office,Engineering,Seattle,98001,US,WA,MSUS,1,0,0\n"
        "10.10.2.0,HQ/wifi,24,HQ Wi-Fi,Contoso,Office,Engineering,Seattle,98001,US,WA,MSUS,1,0,0\n"
        "192.168.1.0,Home,24,Home\n"
    )
    buildings = parse_buildings(text)
    assert buildings.building_of("10.10.2.0") == "HQ Wi-Fi"
    assert buildings.building_of("10.10.2.77") == "HQ Wi-Fi"
    assert buildings.building_of("10.10.9.0") == "HQ"
    assert buildings.building_of("192.168.1.5") == "Home"
    assert buildings.building_of("172.16.0.1") is None
    assert buildings.building_of("not an address") is None
    assert buildings.building_of(None) is None


def test_building_file_tab_separated_with_a_header_forgiven() -> None:
    text = "NetworkIP\tNetworkName\tNetworkRange\tBuildingName\n10.20.5.0\tBranch\t24\tBranch 5\n"
    assert parse_buildings(text).building_of("10.20.5.9") == "Branch 5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0,Net,24\n", "line 1: expected at least 4 columns"),
        ("10.0.0.0,Net,24,B\n10.0.0.x,Net,24,B\n", "line 2: '10.0.0.x'/'24' is not a network"),
        ("10.0.0.0,Net,99,B\n", "line 1"),
        ("\n\n", "holds no networks"),
        ("10.0.0.0,N,24,B,,,,,,,,,2,0,0\n", "line 1: InsideCorp must be 0 or 1, found '2'"),
        ("10.0.0.0,N,24,B,,,,,,,,,1,true,0\n", "ExpressRoute must be 0 or 1"),
        ("10.0.0.0,N,24,B,,,,,,,,,1,0,0,extra\n", "line 1: expected at most 15 columns"),
    ],
)
def test_building_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(BuildingFileError, match=message):
        parse_buildings(text, "b.csv")


@pytest.mark.parametrize("rules_name", list(RuleSetName))
def test_sql_poor_due_to_agrees_with_python(rules_name: RuleSetName) -> None:
    """CQD's "poor due to" counts in SQL: for every case, the reasons SQL finds are the ones
    classify() gives, from the same rule table."""
    rules = RULE_SETS[rules_name]
    rows = []
    for _, kind, changes, _, _ in CASES:
        row = dict.fromkeys(STREAMS.names)
        row.update(metrics_of(kind, changes))
        row["stream_kind"] = kind.value
        rows.append(row)
    con = duckdb.connect()
    con.register("streams", pa.Table.from_pylist(rows, schema=STREAMS))
    names = reasons(rules)
    flags = ", ".join(f"COALESCE({poor_due_to_sql(rules, r)}, FALSE)" for r in names)
    got = con.execute(
        f"SELECT {flags} FROM (SELECT *, {classification_sql(rules)} AS cls FROM streams)"  # noqa: S608
    ).fetchall()
    for (_, kind, changes, _, _), found in zip(CASES, got, strict=True):
        verdict, why = classify(rules, kind, metrics_of(kind, changes))
        assert {n for n, hit in zip(names, found, strict=True) if hit} == set(why), verdict


@pytest.mark.parametrize(
    ("connection", "band", "expected"),
    [
        ("wired", None, NetworkClass.WIRED),
        ("wifi", "frequency50GHz", NetworkClass.WIFI_5GHZ),
        ("wifi", "frequency24GHz", NetworkClass.WIFI_24GHZ),
        ("wifi", "frequency60GHz", NetworkClass.OTHER),
        ("wifi", None, NetworkClass.OTHER),
        ("mobile", None, NetworkClass.OTHER),
        ("tunnel", None, NetworkClass.OTHER),
        (None, None, NetworkClass.OTHER),
    ],
)
def test_network_class(connection: str | None, band: str | None, expected: NetworkClass) -> None:
    assert network_class(connection, band) is expected


def test_scenario_and_endpoint_pair() -> None:
    assert scenario_of("groupCall") is Scenario.CONFERENCE
    assert scenario_of("peerToPeer") is Scenario.PEER_TO_PEER
    assert scenario_of(None) is Scenario.UNKNOWN
    assert endpoint_pair("client", "server") is EndpointPair.SERVER_CLIENT
    assert endpoint_pair("server", "client") is EndpointPair.SERVER_CLIENT
    assert endpoint_pair("client", "client") is EndpointPair.CLIENT_CLIENT
    assert endpoint_pair("client", None) is EndpointPair.UNKNOWN


def test_qer_targets_met_at_or_below() -> None:
    assert TARGETS_INSIDE.met(Measure.SETUP, 0.005) is True
    assert TARGETS_INSIDE.met(Measure.SETUP, 0.0051) is False
    assert TARGETS_OVERALL.met(Measure.DROP, None) is None
    assert (TARGETS_OVERALL.poor_rate, TARGETS_OVERALL.setup_failure_rate) == (0.03, 0.01)
    assert (TARGETS_INSIDE.poor_rate, TARGETS_INSIDE.drop_failure_rate) == (0.02, 0.02)


def test_building_file_all_fifteen_columns() -> None:
    text = (
        "10.10.0.0,HQ-LAN,16,HQ,Contoso,Office,Engineering,Seattle,98001,US,WA,MSUS,1,1,0\n"
        "172.16.18.7,VPN,32,VPN,Contoso,,,,,US,,MSUS,1,0,1\n"
        "192.168.1.0,Home,24,Home,,,,,,,,,0,0\n"  # 14 columns: VPN is optional (0)
    )
    buildings = parse_buildings(text)
    hq = buildings.find("10.10.3.0")
    assert hq is not None
    assert (hq.name, hq.network_name, hq.city, hq.zip_code, hq.country, hq.state, hq.region) == (
        "HQ",
        "HQ-LAN",
        "Seattle",
        "98001",
        "US",
        "WA",
        "MSUS",
    )
    assert (hq.ownership_type, hq.building_type, hq.office_type) == (
        "Contoso",
        "Office",
        "Engineering",
    )
    assert (hq.inside_corp, hq.express_route, hq.vpn) == (True, True, False)
    vpn = buildings.find("172.16.18.7")
    assert vpn is not None and vpn.vpn and vpn.inside_corp
    assert buildings.find("172.16.18.8") is None
    home = buildings.find("192.168.1.9")
    assert home is not None and not home.inside_corp and not home.vpn


def test_user_ids_are_user_ids_only() -> None:
    """A phone number never lands in a user id column: it goes to identity_type / _id."""
    record = {
        "id": "r1",
        "startDateTime": "2026-11-02T10:00:00Z",
        "type": "peerToPeer",
        "sessions": [
            {
                "id": "s1",
                "failureInfo": {"stage": "midcall", "reason": "x"},
                "segments": [
                    {
                        "id": "g1",
                        "startDateTime": "2026-11-02T10:00:00Z",
                        "caller": {
                            "@odata.type": "#microsoft.graph.callRecords.participantEndpoint",
                            "identity": {"user": {"id": "u1", "displayName": "U"}},
                        },
                        "callee": {
                            "@odata.type": "#microsoft.graph.callRecords.participantEndpoint",
                            "identity": {"phone": {"id": "+14255550100"}},
                        },
                        "media": [{"label": "main-audio", "streams": [{"streamId": "1"}]}],
                    },
                    {"id": "g2", "failureInfo": {"stage": "callSetup"}},
                ],
            }
        ],
    }
    rows = flatten(record)
    (stream,) = rows.streams
    assert (stream["caller_user_id"], stream["caller_identity_type"]) == ("u1", "user")
    assert stream["callee_user_id"] is None
    assert (stream["callee_identity_type"], stream["callee_identity_id"]) == (
        "phone",
        "+14255550100",
    )
    g1, g2 = rows.segments
    # the session's midcall failure counts for g1 (it has none); g2 has its own
    assert (g1["failure_from"], g1["dropped"], g1["setup_failed"]) == ("session", True, False)
    assert (g2["failure_from"], g2["setup_failed"], g2["dropped"]) == ("segment", True, False)
    assert (g1["scenario"], g1["endpoints"]) == ("peer-to-peer", "client-client")
    assert rows.calls[0]["setup_failure_count"] == 1 and rows.calls[0]["drop_count"] == 1


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("rules_name", list(RuleSetName))
def test_data_explorer_functions_come_from_the_rule_table(rules_name: RuleSetName) -> None:
    """The Kusto text names every threshold and reason of the rule set, and is well formed."""
    rules = RULE_SETS[rules_name]
    text = kql_functions(rules)
    assert _balanced(text) and text.count("{") == text.count("}") == 1
    for classifier in rules.classifiers.values():
        for condition in classifier.conditions:
            assert f"({condition.metric.value} {condition.op} {condition.threshold!r})" in text
    for reason in reasons(rules):
        assert f"poor_due_to_{reason} = " in text
    assert _balanced(classification_sql(rules))
