"""Media quality of generated segments: realistic values on both sides of CQD's thresholds.

The seed segment (the documented "Get callRecord" example) is one audio line with two healthy
streams; scaling its numbers never crosses a threshold of the Call Quality Dashboard's stream
classification (learn.microsoft.com/microsoftteams/stream-classification-in-call-quality-
dashboard), so every generated stream was good. Here each segment gets a network condition
and the streams' metrics follow it, with the property names and units of the mediaStream
resource (learn.microsoft.com/graph/api/resources/callrecords-mediastream): durations as
ISO 8601 (``PT0.045S``), loss as a fraction, frame loss in percent.

Conditions, per segment (WEIGHTS): most are good; a few are Wi-Fi with high jitter, a
congested link with packet loss, a far relay with a long round trip, a muted direction with
few packets (poor metrics but under CQD's 500-packet gate), or no QoE report at all (every
metric null: unclassified). Video ("main-video") and video-based screen sharing
("applicationsharing-video") lines are added to sessions of records whose modalities include
them, each with a good or poor frame rate, sometimes a frame-loss percentage.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache
from typing import Any

CONDITIONS = ("good", "wifi", "congested", "far_relay", "muted", "no_qoe")
WEIGHTS = (925, 20, 15, 10, 15, 15)  # per mille: ~4.5 % of audio streams poor
_AUDIO_METRICS = (
    "averageAudioDegradation",
    "averageJitter",
    "maxJitter",
    "averagePacketLossRate",
    "maxPacketLossRate",
    "averageRatioOfConcealedSamples",
    "maxRatioOfConcealedSamples",
    "averageRoundTripTime",
    "maxRoundTripTime",
    "packetUtilization",
    "averageAudioNetworkJitter",
    "maxAudioNetworkJitter",
)


def _seconds(value: float) -> str:
    return f"PT{value:.3f}S"


def _audio(stream: dict[str, Any], condition: str, packets: int, rng: random.Random) -> None:
    stream["packetUtilization"] = int(packets * rng.uniform(0.7, 1.0))
    jitter = rng.uniform(0.004, 0.02)
    loss = rng.uniform(0.0, 0.02)
    rtt = rng.uniform(0.02, 0.15)
    if condition == "wifi":
        jitter = rng.uniform(0.031, 0.09)
    elif condition == "congested":
        loss = rng.uniform(0.101, 0.3)
    elif condition == "far_relay":
        rtt = rng.uniform(0.501, 0.9)
    elif condition == "muted":
        stream["packetUtilization"] = rng.randint(20, 500)
        jitter = rng.uniform(0.031, 0.06)
    stream["averageJitter"] = _seconds(jitter)
    stream["maxJitter"] = _seconds(jitter * rng.uniform(1.2, 2.5))
    stream["averagePacketLossRate"] = round(loss, 6)
    stream["maxPacketLossRate"] = round(min(1.0, loss * rng.uniform(1.5, 4)), 6)
    stream["averageRoundTripTime"] = _seconds(rtt)
    stream["maxRoundTripTime"] = _seconds(rtt * rng.uniform(1.2, 2.0))
    # NMOS degradation and healing follow the loss and jitter the stream saw
    impaired = condition in ("wifi", "congested", "muted")
    stream["averageAudioDegradation"] = round(
        rng.uniform(1.05, 2.5) if impaired else rng.uniform(0.05, 0.6), 6
    )
    concealed = loss * 0.8 + (rng.uniform(0.07, 0.12) if impaired else rng.uniform(0.0, 0.03))
    stream["averageRatioOfConcealedSamples"] = round(concealed, 6)
    stream["maxRatioOfConcealedSamples"] = round(min(1.0, concealed * 1.5), 6)
    if condition == "no_qoe":
        for key in _AUDIO_METRICS:
            stream[key] = None


def _video_line(
    audio: dict[str, Any], label: str, poor_rate: float, low: float, rng: random.Random
) -> dict[str, Any]:
    """A video or VBSS media line on the audio line's networks and devices."""
    line = {k: v for k, v in audio.items() if k != "streams"}
    line["label"] = label
    streams = []
    directions = (
        ("callerToCallee", "calleeToCaller") if label == "main-video" else ("callerToCallee",)
    )
    for direction in directions:
        poor = rng.random() < poor_rate
        stream: dict[str, Any] = {
            "streamId": str(rng.randint(10**9, 2**31 - 1)),
            "streamDirection": direction,
            "averageVideoFrameRate": round(
                rng.uniform(low * 0.2, low * 0.95) if poor else rng.uniform(low * 1.3, 30.0), 3
            ),
            "averageVideoFrameLossPercentage": None,
            "postForwardErrorCorrectionPacketLossRate": round(rng.uniform(0.0, 0.05), 6),
            "packetUtilization": rng.randint(2000, 60000),
            "averageJitter": _seconds(rng.uniform(0.004, 0.02)),
            "averagePacketLossRate": round(rng.uniform(0.0, 0.02), 6),
            "averageRoundTripTime": _seconds(rng.uniform(0.02, 0.15)),
            "wasMediaBypassed": False,
        }
        if rng.random() < 0.3:  # frame loss reported: it decides before the frame rate
            stream["averageVideoFrameLossPercentage"] = round(
                rng.uniform(50.5, 80.0) if poor else rng.uniform(0.0, 20.0), 3
            )
        streams.append(stream)
    line["streams"] = streams
    return line


def session_media(modalities: tuple[str, ...], rng: random.Random) -> tuple[bool, bool]:
    """Whether a session of a record with these modalities carries video / screen sharing."""
    video = "video" in modalities and rng.random() < 0.6
    sharing = "screenSharing" in modalities and rng.random() < 0.5
    return video, sharing


# Office and home networks (subnet, connection type): bad conditions are likelier on some, so
# a report by subnet or building has something to find.
SITES = (
    ("10.10.1.0", "wired"),
    ("10.10.2.0", "wifi"),
    ("10.20.5.0", "wired"),
    ("10.20.6.0", "wifi"),
    ("192.168.1.0", "wifi"),
)
_LIKELY_SITES = {"wifi": (1, 3, 4), "congested": (2, 3), "far_relay": (4,)}
PLATFORMS = ("windows", "macOS", "web", "iOS", "android")


def _place(network: dict[str, Any], site: int, rng: random.Random) -> None:
    subnet, kind = SITES[site]
    network["subnet"] = subnet
    network["ipAddress"] = subnet.rsplit(".", 1)[0] + f".{rng.randint(2, 254)}"
    network["connectionType"] = kind


@lru_cache(maxsize=65536)
def _platform_of(person_id: str) -> str:
    return PLATFORMS[zlib.crc32(person_id.encode()) % len(PLATFORMS)]


def _platform(endpoint: object) -> None:
    """A person keeps one platform (by their id), so --by platform groups people sensibly."""
    if not isinstance(endpoint, dict):
        return
    agent = endpoint.get("userAgent")
    for value in (endpoint.get("identity") or {}).values():
        if isinstance(value, dict) and value.get("id") and isinstance(agent, dict):
            agent["platform"] = _platform_of(str(value["id"]))
            return


def apply(
    segment: dict[str, Any],
    seconds: float,
    video: bool,
    sharing: bool,
    rng: random.Random,
) -> None:
    """Give the segment's audio streams a network condition, and add video / VBSS lines."""
    media = segment.get("media") or []
    if not media:
        return
    audio = media[0]
    condition = rng.choices(CONDITIONS, WEIGHTS)[0]
    likely = _LIKELY_SITES.get(condition)
    caller_site = rng.choice(likely) if likely else rng.randrange(len(SITES))
    if isinstance(audio.get("callerNetwork"), dict):
        _place(audio["callerNetwork"], caller_site, rng)
    if isinstance(audio.get("calleeNetwork"), dict):
        _place(audio["calleeNetwork"], rng.randrange(len(SITES)), rng)
    _platform(segment.get("caller"))
    _platform(segment.get("callee"))
    packets = max(1, int(50 * seconds))  # 20 ms audio packets: 50 a second per direction
    streams = audio.get("streams") or []
    muted = rng.randrange(len(streams)) if streams else -1
    for n, stream in enumerate(streams):
        # a muted microphone is one direction; the other is healthy
        this = condition if condition != "muted" or n == muted else "good"
        _audio(stream, this, packets, rng)
    if video:
        media.append(_video_line(audio, "main-video", 0.06, 7.0, rng))
    if sharing:
        media.append(_video_line(audio, "applicationsharing-video", 0.05, 2.0, rng))
