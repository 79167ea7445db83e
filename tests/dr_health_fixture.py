"""Direct Routing rows whose health figures were worked out by hand (below each group), for
the unit test over a local table and the integration test through the archive and the page.

Two SBCs over 2024-11-02 and 2024-11-03 (UTC), the range [2024-11-02, 2024-11-04):

sbc-a.contoso.com, 14 attempts in the range (two more just outside it):
  2024-11-02 09h  A1  answered 09:00:00-09:10:00 (600 s)  bypass
                  A2  answered 09:05:00-09:05:10 (10 s)   bypass    short
                  A3  answered 09:05:05-09:17:05 (720 s)            -> 3 at once from 09:05:05
                  A4  486 Busy Here                        bypass    effective
                  A5  503 Service Unavailable                        not effective
  2024-11-02 10h  A6  answered 10:00:00-10:00:14 (14 s)              short
                  A7  503 Service Unavailable                        not effective
                  A8  487 Request Terminated                         effective
                  A9  answered 10:30:00-11:30:00 (3600 s)  bypass
  2024-11-02 11h  A16 487 Request Terminated                         effective
                                  (no call starts this hour, A9 is still going on: peak 1)
  2024-11-02 23h  A15 answered 23:50:00-00:20:00 (1800 s), into the next day
  2024-11-03 00h  A10 480 Temporarily Unavailable (at 00:00:00)      effective
                  A11 603 Decline                                    effective
                                  (no call starts this hour, A15 is still going on: peak 1)
  2024-11-03 01h  A12 answered 01:00:00-01:00:15 (15 s: not under 15 s)
  outside         AX1 answered, started 2024-11-01 23:59:59; AX2 503 at 2024-11-04 00:00:00

sbc-b.contoso.com, exactly 100 attempts, all 2024-11-02 14h (not flagged: "below 100"):
  B0..B89  answered, B<i> from 14:00:00 + 30 s x i for 60 s; bypass when i is even (45).
           Each overlaps the next only: B<i> ends as B<i+2> starts -> peak 2, first at 14:00:30.
  B90..94  486 Busy Here (effective), 14:50:00 + i s
  B95..99  500 Server Internal Error (not effective), 14:55:00 + i s
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

SINCE = datetime(2024, 11, 2, tzinfo=UTC)
UNTIL = datetime(2024, 11, 4, tzinfo=UTC)
A, B = "sbc-a.contoso.com", "sbc-b.contoso.com"
_NO_TIME = "0001-01-01T00:00:00Z"  # Graph's "no time" in the getDirectRoutingCalls example
_ANSWERED = (0, 540000, "BYE")  # what the documented example's successful row carries


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(
    n: int,
    sbc: str,
    start: str,
    seconds: int | None = None,
    sip: tuple[int, int, str] = _ANSWERED,
    bypass: bool = False,
) -> dict[str, Any]:
    """An answered call of ``seconds``, or (seconds None) a failed attempt ending in ``sip``."""
    began = datetime.fromisoformat(start).replace(tzinfo=UTC)
    answered = seconds is not None
    code, sub, phrase = sip
    return {
        "id": f"0d1e0000-0000-4000-8000-{n:012d}",
        "correlationId": f"c0de0000-0000-4000-8000-{n:012d}",
        "userId": "a1b2c3d4-0000-4000-8000-000000000001",
        "userPrincipalName": "megan@contoso.com",
        "userDisplayName": "Megan Bowen",
        "startDateTime": _z(began),
        "inviteDateTime": _z(began - timedelta(seconds=2)),
        "failureDateTime": _NO_TIME if answered else _z(began),
        "endDateTime": _z(began + timedelta(seconds=seconds)) if answered else _NO_TIME,
        "duration": seconds if answered else 0,
        "callType": "ByotOut",
        "successfulCall": answered,
        "callerNumber": "+14255550100",
        "calleeNumber": "+1206555***",
        "mediaPathLocation": "USWE",
        "signalingLocation": "USWE",
        "finalSipCode": code,
        "callEndSubReason": sub,
        "finalSipCodePhrase": phrase,
        "trunkFullyQualifiedDomainName": sbc,
        "mediaBypassEnabled": bypass,
    }


BUSY = (486, 560486, "Busy Here")
UNAVAILABLE = (503, 560503, "Service Unavailable")
TERMINATED = (487, 540487, "Request Terminated")
NO_ANSWER = (480, 560480, "Temporarily Unavailable")
DECLINE = (603, 560603, "Decline")
SERVER_ERROR = (500, 560500, "Server Internal Error")


def rows() -> list[dict[str, Any]]:
    made = [
        _row(1, A, "2024-11-02T09:00:00", 600, bypass=True),
        _row(2, A, "2024-11-02T09:05:00", 10, bypass=True),
        _row(3, A, "2024-11-02T09:05:05", 720),
        _row(4, A, "2024-11-02T09:30:00", sip=BUSY, bypass=True),
        _row(5, A, "2024-11-02T09:40:00", sip=UNAVAILABLE),
        _row(6, A, "2024-11-02T10:00:00", 14),
        _row(7, A, "2024-11-02T10:10:00", sip=UNAVAILABLE),
        _row(8, A, "2024-11-02T10:20:00", sip=TERMINATED),
        _row(9, A, "2024-11-02T10:30:00", 3600, bypass=True),
        _row(10, A, "2024-11-03T00:00:00", sip=NO_ANSWER),
        _row(11, A, "2024-11-03T00:15:00", sip=DECLINE),
        _row(12, A, "2024-11-03T01:00:00", 15),
        _row(13, A, "2024-11-01T23:59:59", 301),  # before the range
        _row(14, A, "2024-11-04T00:00:00", sip=UNAVAILABLE),  # at its (exclusive) end
        _row(15, A, "2024-11-02T23:50:00", 1800),
        _row(16, A, "2024-11-02T11:10:00", sip=TERMINATED),
    ]
    b0 = datetime(2024, 11, 2, 14, tzinfo=UTC)
    for i in range(90):
        start = (b0 + timedelta(seconds=30 * i)).strftime("%Y-%m-%dT%H:%M:%S")
        made.append(_row(100 + i, B, start, 60, bypass=i % 2 == 0))
    for i in range(90, 95):
        start = (b0 + timedelta(minutes=50, seconds=i)).strftime("%Y-%m-%dT%H:%M:%S")
        made.append(_row(100 + i, B, start, sip=BUSY))
    for i in range(95, 100):
        start = (b0 + timedelta(minutes=55, seconds=i)).strftime("%Y-%m-%dT%H:%M:%S")
        made.append(_row(100 + i, B, start, sip=SERVER_ERROR))
    return made


# ---------------------------------------------------------------- the figures, by hand

_FIELDS = (
    "attempts",
    "effective",
    "ner",
    "low_volume",
    "answered",
    "avg_duration_s",
    "short_calls",
    "short_calls_pct",
    "media_bypass_pct",
    "peak_concurrent",
)


def _f(*values: Any) -> dict[str, Any]:
    return dict(zip(_FIELDS, values, strict=True))


# A: 14 attempts; effective = 7 answered + 486 + 2 x 487 + 480 + 603 = 12 -> 85.71, flagged.
#    answered 600+10+720+14+3600+15+1800 = 6759 s / 7 = 965.57; under 15 s: 10 and 14 -> 2/7.
#    bypass A1 A2 A4 A9 = 4/14. Peak 3 (A1, A2, A3 from 09:05:05 to 09:05:10).
# B: 100 attempts; effective 90 + 5 = 95 -> 95.00, not flagged; 60 s each; bypass 45/100.
PER_SBC: dict[str, dict[str, Any]] = {
    A: {
        **_f(14, 12, 85.71, True, 7, 965.57, 2, 28.57, 28.57, 3),
        "peak_at": "2024-11-02T09:05:05+00:00",
    },
    B: {
        **_f(100, 95, 95.0, False, 90, 60.0, 0, 0.0, 45.0, 2),
        "peak_at": "2024-11-02T14:00:30+00:00",
    },
}

# Per day: A's 2 Nov = A1..A9, A15, A16: 6 answered + 486 + 2 x 487 = 9 of 11; 6744 s / 6 =
# 1124; short 2/6; bypass 4/11; peak 3. A's 3 Nov = A10..A12: 3 of 3; 15 s; peak 1 (A15, A12).
PER_DAY: dict[tuple[str, str], dict[str, Any]] = {
    (A, "2024-11-02T00:00:00+00:00"): _f(11, 9, 81.82, True, 6, 1124.0, 2, 33.33, 36.36, 3),
    (A, "2024-11-03T00:00:00+00:00"): _f(3, 3, 100.0, True, 1, 15.0, 0, 0.0, 0.0, 1),
    (B, "2024-11-02T00:00:00+00:00"): _f(100, 95, 95.0, False, 90, 60.0, 0, 0.0, 45.0, 2),
}

# Per hour: A 09h = A1..A5: 4 of 5 = 80; (600+10+720)/3 = 443.33; short 1/3; bypass 3/5; peak 3.
# A 10h = A6..A9: 3 of 4 = 75; (14+3600)/2 = 1807; short 1/2; bypass 1/4; peak 1.
# A 11h = A16 alone, none answered, A9 still going on: peak 1. A 23h = A15 alone. A 3 Nov 00h = A10, A11: none answered (no average, no short share), but
# A15 from the day before still occupies the SBC: peak 1. A 01h = A12.
PER_HOUR: dict[tuple[str, str], dict[str, Any]] = {
    (A, "2024-11-02T09:00:00+00:00"): _f(5, 4, 80.0, True, 3, 443.33, 1, 33.33, 60.0, 3),
    (A, "2024-11-02T10:00:00+00:00"): _f(4, 3, 75.0, True, 2, 1807.0, 1, 50.0, 25.0, 1),
    (A, "2024-11-02T11:00:00+00:00"): _f(1, 1, 100.0, True, 0, None, 0, None, 0.0, 1),
    (A, "2024-11-02T23:00:00+00:00"): _f(1, 1, 100.0, True, 1, 1800.0, 0, 0.0, 0.0, 1),
    (A, "2024-11-03T00:00:00+00:00"): _f(2, 2, 100.0, True, 0, None, 0, None, 0.0, 1),
    (A, "2024-11-03T01:00:00+00:00"): _f(1, 1, 100.0, True, 1, 15.0, 0, 0.0, 0.0, 1),
    (B, "2024-11-02T14:00:00+00:00"): _f(100, 95, 95.0, False, 90, 60.0, 0, 0.0, 45.0, 2),
}

# Top final SIP codes: (code, sub-reason, phrase, calls, % of the SBC's attempts, effective),
# most calls first, then by code.
TOP_CODES: dict[str, list[tuple[int, int, str, int, float, bool]]] = {
    A: [
        (0, 540000, "BYE", 7, 50.0, True),
        (487, 540487, "Request Terminated", 2, 14.29, True),
        (503, 560503, "Service Unavailable", 2, 14.29, False),
        (480, 560480, "Temporarily Unavailable", 1, 7.14, True),
        (486, 560486, "Busy Here", 1, 7.14, True),
        (603, 560603, "Decline", 1, 7.14, True),
    ],
    B: [
        (0, 540000, "BYE", 90, 90.0, True),
        (486, 560486, "Busy Here", 5, 5.0, True),
        (500, 560500, "Server Internal Error", 5, 5.0, False),
    ],
}


# ---------------------------------------------------------------- checking a report and a page


def check_report(report: dict[str, Any]) -> None:
    """Every figure of the JSON report equals the hand-made one (rounded figures to 1e-9)."""
    assert report["since"] == SINCE.isoformat() and report["until"] == UNTIL.isoformat()
    assert report["network_effective_sip_codes"] == [480, 486, 487, 603]
    assert report["low_volume_below"] == 100
    assert [s["sbc"] for s in report["sbcs"]] == [A, B]
    for sbc in report["sbcs"]:
        want = PER_SBC[sbc["sbc"]]
        got = {k: sbc[k] for k in want}
        assert got == _approx(want), sbc["sbc"]
        codes = [
            (
                c["sip_code"],
                c["sub_reason"],
                c["phrase"],
                c["calls"],
                c["pct"],
                c["network_effective"],
            )
            for c in sbc["top_sip_codes"]
        ]
        assert codes == _approx_rows(TOP_CODES[sbc["sbc"]]), sbc["sbc"]
    for key, buckets, period in (("day", PER_DAY, "days"), ("hour", PER_HOUR, "hours")):
        got = {(r["sbc"], r[key]): {k: r[k] for k in _FIELDS} for r in report[period]}
        assert got.keys() == buckets.keys(), period
        for bucket, want in buckets.items():
            assert got[bucket] == _approx(want), (period, bucket)


def _approx(want: dict[str, Any]) -> dict[str, Any]:
    import pytest

    return {k: pytest.approx(v, abs=1e-9) if isinstance(v, float) else v for k, v in want.items()}


def _approx_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    import pytest

    return [
        tuple(pytest.approx(v, abs=1e-9) if isinstance(v, float) else v for v in r) for r in rows
    ]


def page_cells(dom: str) -> dict[tuple[str, ...], dict[str, str]]:
    """The page's figure rows: (sbc,) for the SBC table, (sbc, "day"|"hour", ISO) for the
    period tables, (sbc, "sip", code, sub-reason) for the SIP codes -> {data-k: text}."""
    from html.parser import HTMLParser

    found: dict[tuple[str, ...], dict[str, str]] = {}

    class Cells(HTMLParser):
        row: tuple[str, ...] | None = None
        key: str | None = None
        cells: dict[str, str] = {}

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = {k: v or "" for k, v in attrs}
            if tag == "tr" and "data-sbc" in a:
                if "data-day" in a:
                    self.row = (a["data-sbc"], "day", a["data-day"])
                elif "data-hour" in a:
                    self.row = (a["data-sbc"], "hour", a["data-hour"])
                elif "data-sip_code" in a:
                    self.row = (a["data-sbc"], "sip", a["data-sip_code"])
                else:
                    self.row = (a["data-sbc"],)
                self.cells = {}
            elif tag == "td" and self.row is not None and "data-k" in a:
                self.key = a["data-k"]
                self.cells[self.key] = ""

        def handle_data(self, data: str) -> None:
            if self.key is not None:
                self.cells[self.key] += data

        def handle_endtag(self, tag: str) -> None:
            if tag == "td":
                self.key = None
            elif tag == "tr" and self.row is not None:
                row = self.row
                if row[1:2] == ("sip",):
                    row = (*row, self.cells.get("sub_reason", ""))
                found[row] = dict(self.cells)
                self.row = None

    Cells().feed(dom)
    return found


def _shown(value: Any) -> str:
    """How the page writes a figure: two decimals for rates and averages, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def check_page(dom: str) -> None:
    """Every hand-made figure as the page shows it, and the low-volume flag where it belongs."""
    cells = page_cells(dom)
    for sbc, want in PER_SBC.items():
        got = cells[(sbc,)]
        for key, value in want.items():
            if key == "low_volume":
                assert got[key] == ("below 100" if value else ""), (sbc, key)
            elif key == "peak_at":
                assert got[key] == value[:19].replace("T", " "), (sbc, key, got[key])
            else:
                assert got[key] == _shown(value), (sbc, key, got[key])
    for period, buckets in (("day", PER_DAY), ("hour", PER_HOUR)):
        for (sbc, at), want in buckets.items():
            got = cells[(sbc, period, at)]
            for key, value in want.items():
                if key != "low_volume":
                    assert got[key] == _shown(value), (sbc, period, at, key, got[key])
    for sbc, codes in TOP_CODES.items():
        for code, sub, phrase, calls, pct, effective in codes:
            got = cells[(sbc, "sip", str(code), str(sub))]
            assert got == {
                "sub_reason": str(sub),
                "phrase": phrase,
                "calls": str(calls),
                "pct": f"{pct:.2f}",
                "network_effective": "yes" if effective else "no",
            }, (sbc, code)
    expected_rows = len(PER_SBC) + len(PER_DAY) + len(PER_HOUR) + sum(map(len, TOP_CODES.values()))
    assert len(cells) == expected_rows  # nothing more, nothing less
