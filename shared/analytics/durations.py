"""ISO 8601 durations as Graph sends them (``PT0.016S``) -> milliseconds.

Graph's mediaStream jitter and round-trip times are Edm.Duration values written in ISO 8601
(learn.microsoft.com/graph/api/resources/callrecords-mediastream). Only day and time parts are
accepted: years and months have no fixed length, and no Graph duration uses them.
"""

from __future__ import annotations

import re

_DURATION = re.compile(
    r"^(?P<sign>[-+])?P(?!$)(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_MS = {"days": 86_400_000.0, "hours": 3_600_000.0, "minutes": 60_000.0, "seconds": 1000.0}


def duration_ms(value: str) -> float:
    """``PT0.03S`` -> 30.0, ``PT1M2.5S`` -> 62500.0, ``P1DT2H`` -> 93600000.0.

    Raises ValueError naming the value when it is not an ISO 8601 day-time duration.
    """
    text = value.strip()
    m = _DURATION.match(text)
    if not m or text.upper().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration: {value[:40]!r}")
    total = sum(float(m.group(part)) * ms for part, ms in _MS.items() if m.group(part))
    total = round(total, 6)  # 0.007 * 1000 is 7.000000000000001 in binary floating point
    return -total if m.group("sign") == "-" else total


def duration_ms_or_none(value: object) -> float | None:
    """The milliseconds of a Graph duration, or None when it is absent or unreadable.

    Derived tables must never stop on one odd value: an unreadable metric counts as not
    reported (the stream may then be unclassified), exactly as a missing one does.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return duration_ms(value)
    except ValueError:
        return None
