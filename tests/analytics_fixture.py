"""A hand-made set of call records whose report figures were worked out by hand (below, beside
each expectation), shared by the CLI / page test and the Spark test.

Three calls on 2026-11-02 UTC, ten segments. Every stream and segment belongs to its caller.

  A, groupCall (conference; callee a conference server: server-client)
    A1 alice  10.1.5.0 (HQ, inside)      wired      audio: poor (jitter 40 ms), good
    A2 bob    10.2.0.0 (Branch, inside)  wifi 5GHz  audio: poor (RTT 600 ms and loss 0.2), good;
                                                    failureInfo midcall -> a drop
    A3 carol  no media, no network (other)          the session's failureInfo callSetup -> a
                                                    setup failure (the segment has none)
  B, peerToPeer (dave calls a phone number: client-client)
    B1..B5 dave 192.168.1.0 (not in the file) wifi 2.4GHz, two audio streams each:
      B1 poor (jitter 35 ms) + good; B2 jitter 45 ms but 300 packets (CQD's gate: good) + good;
      B3, B4 good + good; B5 good + good with failureInfo stage unknown (neither)
  C, peerToPeer (erin and frank, client-client)
    C1 erin   10.9.0.0 (the VPN building, inside)  wired  audio: poor (RTT 700 ms), good,
              one with no metric (unclassified); video: poor (frame rate 5 fps)
    C2 frank  10.1.7.0 (HQ)  wifi 5GHz  segment failureInfo callSetup: a media line, no stream

Totals: 10 segments, 2 setup failures (A3, C2) -> 0.2; 8 set up, 1 drop (A2) -> 0.125.
18 streams, 17 classified, 5 poor (A1, A2, B1, C1 audio, C1 video).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

DAY = date(2026, 11, 2)
SINCE = "2026-11-02T00:00:00Z"
UNTIL = "2026-11-03T00:00:00Z"

BUILDINGS_CSV = (
    "NetworkIP,NetworkName,NetworkRange,BuildingName,OwnershipType,BuildingType,"
    "BuildingOfficeType,City,ZipCode,Country,State,Region,InsideCorp,ExpressRoute,VPN\n"
    "10.1.0.0,HQ-LAN,16,HQ,Contoso,Office,Engineering,Seattle,98001,US,WA,NA,1,0,0\n"
    "10.2.0.0,Branch-LAN,24,Branch,Contoso,Office,Sales,Oslo,0150,NO,,EMEA,1,1,0\n"
    "10.9.0.0,VPN,24,VPN,Contoso,,,Seattle,98001,US,WA,NA,1,0,1\n"
)
TENANT = "dc368399-474c-4d40-900c-6265431fd81f"
PHONE = "+14255550100"

_CLIENT = "#microsoft.graph.callRecords.participantEndpoint"
_SERVER = "#microsoft.graph.callRecords.serviceEndpoint"


def _user(name: str) -> dict[str, Any]:
    return {"user": {"id": f"u-{name}", "displayName": name.title(), "tenantId": TENANT}}


def _client(identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "@odata.type": _CLIENT,
        "identity": identity,
        "userAgent": {"platform": "windows", "productFamily": "teams"},
    }


_CONFERENCE_SERVER = {"@odata.type": _SERVER, "userAgent": {"role": "conferencingServer"}}


def _net(subnet: str | None, connection: str, band: str | None = None) -> dict[str, Any]:
    net: dict[str, Any] = {"connectionType": connection}
    if subnet:
        net |= {"subnet": subnet, "ipAddress": subnet[:-1] + "23"}
    if band:
        net["wifiBand"] = band
    return net


def audio(
    rtt_ms: float = 40, loss: float = 0.01, jitter_ms: float = 5, packets: int = 1000
) -> dict[str, Any]:
    return {
        "streamId": "1",
        "streamDirection": "callerToCallee",
        "averageRoundTripTime": f"PT{rtt_ms / 1000:.3f}S",
        "averagePacketLossRate": loss,
        "averageJitter": f"PT{jitter_ms / 1000:.3f}S",
        "packetUtilization": packets,
    }


GOOD = audio()


def _segment(
    sid: str,
    caller: dict[str, Any],
    callee: dict[str, Any],
    media: list[dict[str, Any]],
    failure: str | None = None,
) -> dict[str, Any]:
    seg: dict[str, Any] = {
        "id": sid,
        "startDateTime": "2026-11-02T10:00:00Z",
        "endDateTime": "2026-11-02T10:20:00Z",
        "caller": caller,
        "callee": callee,
        "media": media,
    }
    if failure:
        seg["failureInfo"] = {"stage": failure, "reason": "test"}
    return seg


def _media(
    label: str,
    caller_net: dict[str, Any] | None,
    callee_net: dict[str, Any] | None,
    streams: list[dict[str, Any]],
) -> dict[str, Any]:
    out: dict[str, Any] = {"label": label, "streams": streams}
    if caller_net:
        out["callerNetwork"] = caller_net
    if callee_net:
        out["calleeNetwork"] = callee_net
    return out


def _record(rid: str, kind: str, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": rid,
        "version": 1,
        "type": kind,
        "modalities": ["audio"],
        "startDateTime": "2026-11-02T10:00:00Z",
        "endDateTime": "2026-11-02T10:30:00Z",
        "lastModifiedDateTime": "2026-11-02T10:40:00Z",
        "organizer_v2": {"id": "u-alice", "identity": _user("alice")},
        "participants_v2": [],
        "sessions": sessions,
    }


def _session(sid: str, segments: list[dict[str, Any]], failure: str | None = None) -> dict:
    session: dict[str, Any] = {
        "id": sid,
        "startDateTime": "2026-11-02T10:00:00Z",
        "endDateTime": "2026-11-02T10:30:00Z",
        "segments": segments,
    }
    if failure:
        session["failureInfo"] = {"stage": failure, "reason": "test"}
    return session


def records() -> list[dict[str, Any]]:
    server_net = _net("52.112.0.0", "wired")  # a Microsoft relay: never a missing subnet
    alice, bob, carol, dave, erin, frank = (
        _client(_user(n)) for n in ("alice", "bob", "carol", "dave", "erin", "frank")
    )
    phone = _client({"phone": {"id": PHONE}})
    a = _record(
        "00000000-0000-0000-0000-00000000000a",
        "groupCall",
        [
            _session(
                "a-s1",
                [
                    _segment(
                        "A1",
                        alice,
                        _CONFERENCE_SERVER,
                        [
                            _media(
                                "main-audio",
                                _net("10.1.5.0", "wired"),
                                server_net,
                                [audio(jitter_ms=40), GOOD],
                            )
                        ],
                    )
                ],
            ),
            _session(
                "a-s2",
                [
                    _segment(
                        "A2",
                        bob,
                        _CONFERENCE_SERVER,
                        [
                            _media(
                                "main-audio",
                                _net("10.2.0.0", "wifi", "frequency50GHz"),
                                server_net,
                                [audio(rtt_ms=600, loss=0.2), GOOD],
                            )
                        ],
                        failure="midcall",
                    )
                ],
            ),
            _session("a-s3", [_segment("A3", carol, _CONFERENCE_SERVER, [])], "callSetup"),
        ],
    )
    home = _net("192.168.1.0", "wifi", "frequency24GHz")
    b_streams = [
        [audio(jitter_ms=35), GOOD],
        [audio(jitter_ms=45, packets=300), GOOD],
        [GOOD, GOOD],
        [GOOD, GOOD],
        [GOOD, GOOD],
    ]
    b = _record(
        "00000000-0000-0000-0000-00000000000b",
        "peerToPeer",
        [
            _session(
                "b-s1",
                [
                    _segment(
                        f"B{n + 1}",
                        dave,
                        phone,
                        [_media("main-audio", home, None, streams)],
                        failure="unknown" if n == 4 else None,
                    )
                    for n, streams in enumerate(b_streams)
                ],
            )
        ],
    )
    c = _record(
        "00000000-0000-0000-0000-00000000000c",
        "peerToPeer",
        [
            _session(
                "c-s1",
                [
                    _segment(
                        "C1",
                        erin,
                        frank,
                        [
                            _media(
                                "main-audio",
                                _net("10.9.0.0", "wired"),
                                _net("10.1.7.0", "wifi", "frequency50GHz"),
                                [audio(rtt_ms=700), GOOD, {"streamId": "9"}],
                            ),
                            _media(
                                "main-video",
                                _net("10.9.0.0", "wired"),
                                _net("10.1.7.0", "wifi", "frequency50GHz"),
                                [{"streamId": "8", "averageVideoFrameRate": 5.0}],
                            ),
                        ],
                    ),
                    # a failed setup: the media line and its networks, no stream
                    _segment(
                        "C2",
                        frank,
                        erin,
                        [
                            _media(
                                "main-audio", _net("10.1.7.0", "wifi", "frequency50GHz"), None, []
                            )
                        ],
                        failure="callSetup",
                    ),
                ],
            )
        ],
    )
    return [a, b, c]


START = datetime(2026, 11, 2, tzinfo=UTC)

# ---------------------------------------------------------------- the figures, by hand

TOTALS = {
    "streams": 18,
    "classified": 17,
    "poor": 5,
    "poor_rate": 5 / 17,
    "audio_poor_rate": 4 / 16,
}
RELIABILITY = {
    "segments": 10,
    "setup_failures": 2,
    "set_up": 8,
    "drops": 1,
    "setup_failure_rate": 0.2,
    "drop_failure_rate": 0.125,
    "poor_rate_met": False,  # 0.25 > 3 %
    "setup_failure_rate_met": False,  # 0.2 > 1 %
    "drop_failure_rate_met": False,  # 0.125 > 3 %
}
POOR_DUE_TO = {
    "round_trip": 2,  # A2, C1
    "packet_loss": 1,  # A2
    "jitter": 2,  # A1, B1 (B2's jitter is under the packet gate)
    "frame_loss": 0,
    "frame_rate": 1,  # C1 video
    "post_fec_packet_loss": 0,
}


def row(
    key: str,
    streams: int,
    poor: int,
    audio_streams: int,
    audio_poor: int,
    segments: int,
    setup_failures: int,
    drops: int,
    targets: str,
    met: tuple[bool | None, bool | None, bool | None],
) -> dict[str, Any]:
    set_up = segments - setup_failures
    return {
        "key": key,
        "streams": streams,
        "poor": poor,
        "audio_streams": audio_streams,
        "audio_poor": audio_poor,
        "audio_poor_rate": audio_poor / audio_streams if audio_streams else None,
        "segments": segments,
        "setup_failures": setup_failures,
        "set_up": set_up,
        "drops": drops,
        "setup_failure_rate": setup_failures / segments if segments else None,
        "drop_failure_rate": drops / set_up if set_up else None,
        "targets": targets,
        "poor_rate_met": met[0],
        "setup_failure_rate_met": met[1],
        "drop_failure_rate_met": met[2],
    }


# Inside targets: 2 % / 0.5 % / 2 %; overall: 3 % / 1 % / 3 %.
BY: dict[str, list[dict[str, Any]]] = {
    "network": [
        # A3: no streams, one setup failure; never set up, so no drop rate
        row("other", 0, 0, 0, 0, 1, 1, 0, "overall", (None, False, None)),
        # B1..B5: 10 audio, 1 poor = 10 %
        row("wifi-2.4ghz", 10, 1, 10, 1, 5, 0, 0, "overall", (False, True, True)),
        # A2 (2 audio, 1 poor, dropped) and C2 (setup failure); both inside
        row("wifi-5ghz", 2, 1, 2, 1, 2, 1, 1, "inside", (False, False, False)),
        # A1 (2 audio, 1 poor) and C1 (2 classified audio, 1 poor; video poor): inside
        row("wired", 5, 3, 4, 2, 2, 0, 0, "inside", (False, True, True)),
    ],
    "inside": [
        # A1, A2, C1, C2: 4 segments, C2 failed, 3 set up, A2 dropped
        row("inside", 7, 4, 6, 3, 4, 1, 1, "inside", (False, False, False)),
        # A3 and B1..B5: 6 segments, A3 failed
        row("outside", 10, 1, 10, 1, 6, 1, 0, "overall", (False, False, True)),
    ],
    "vpn": [
        row("not vpn", 14, 3, 14, 3, 9, 2, 1, "overall", (False, False, False)),
        row("vpn", 3, 2, 2, 1, 1, 0, 0, "inside", (False, True, True)),
    ],
    "scenario": [
        row("conference, server-client", 4, 2, 4, 2, 3, 1, 1, "overall", (False, False, False)),
        row("peer-to-peer, client-client", 13, 3, 12, 2, 7, 1, 0, "overall", (False, False, True)),
    ],
    # worst first: poor, then poor rate, then classified streams, then the key
    "building": [
        row("VPN", 3, 2, 2, 1, 1, 0, 0, "inside", (False, True, True)),
        row("Branch", 2, 1, 2, 1, 1, 0, 1, "inside", (False, True, False)),
        row("HQ", 2, 1, 2, 1, 2, 1, 0, "inside", (False, False, True)),
        row("(not in building file)", 10, 1, 10, 1, 6, 1, 0, "overall", (False, False, True)),
    ],
    "city": [
        row("Seattle", 5, 3, 4, 2, 3, 1, 0, "inside", (False, False, True)),
        row("Oslo", 2, 1, 2, 1, 1, 0, 1, "inside", (False, True, False)),
        row("(not in building file)", 10, 1, 10, 1, 6, 1, 0, "overall", (False, False, True)),
    ],
    # with the building file: a user whose every segment is inside gets the inside targets
    "user": [
        row("u-erin", 3, 2, 2, 1, 1, 0, 0, "inside", (False, True, True)),
        row("u-alice", 2, 1, 2, 1, 1, 0, 0, "inside", (False, True, True)),
        row("u-bob", 2, 1, 2, 1, 1, 0, 1, "inside", (False, True, False)),
        row("u-dave", 10, 1, 10, 1, 5, 0, 0, "overall", (False, True, True)),
        row("u-carol", 0, 0, 0, 0, 1, 1, 0, "overall", (None, False, None)),
        row("u-frank", 0, 0, 0, 0, 1, 1, 0, "inside", (None, False, None)),
    ],
}
# --reliability: setup failures + drops first, then segments, then the key
BY_BUILDING_RELIABILITY = ["(not in building file)", "HQ", "Branch", "VPN"]
MISSING_SUBNETS = [{"subnet": "192.168.1.0", "audio_streams": 10}]
