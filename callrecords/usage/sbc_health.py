"""Direct Routing health per SBC, from the ``direct_routing_calls`` Parquet table (DuckDB).

What the Teams admin center's Health Dashboard for Direct Routing shows for recent days
(learn.microsoft.com/microsoftteams/direct-routing-health-dashboard), over any range the
archive holds: per SBC (``trunkFullyQualifiedDomainName``), per hour and per day,

- attempts: the rows (each directRoutingLogRow is one call attempt);
- NER, the Network Effectiveness Ratio: network-effective attempts / attempts x 100. Microsoft
  counts "answered calls + user busy + ring no answer + terminal reject seizures"; in the log's
  fields that is ``successfulCall`` or a ``finalSipCode`` of 486, 480, 487 or 603
  (:class:`EffectiveSipCode`). Below 100 attempts the figure is shown but flagged
  (``low_volume``): the dashboard warns that the NER of fewer calls "might be quite low, but
  still be normal";
- the answered calls' average ``duration`` and the share of them shorter than 15 s (the
  dashboard names 15 s as a sign that callers hang up on an unreliable service);
- peak concurrent calls: a call occupies its SBC from ``startDateTime`` to ``endDateTime``
  (``startDateTime + duration`` where a row has no end), a half-open interval, so a call that
  ends when another starts does not overlap it. Failed attempts have neither an end nor a
  duration and do not count. Calls that started before the range are not seen;
- the share of attempts on a trunk enabled for media bypass (``mediaBypassEnabled``);

and per SBC the top final SIP codes with Microsoft's ``callEndSubReason`` and the phrase.
Rows belong to the hour and day of their ``startDateTime``, in UTC.

Rows appear in Graph late ("usually 24 to 48 hour latency", shared/usage/reread.py), and the
hourly sync re-reads the last MIN_REREAD for them, so an hour or day that ends after
``settled_before`` (the caller's: the sync's watermark less MIN_REREAD) may still gain
attempts: it is marked ``provisional``, and so is an SBC with such a day. A dip in NER on the
last two days is then read as what it may be, rows not yet published, not a failing trunk.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

LOW_VOLUME_ATTEMPTS = 100  # the dashboard: fewer calls may give a low NER that is still normal
SHORT_CALL_SECONDS = 15
TOP_SIP_CODES = 10


class EffectiveSipCode(IntEnum):
    """Final SIP codes of attempts that failed through the callee, not the network (RFC 3261
    reason phrases); with the answered calls they are Microsoft's network-effective attempts."""

    TEMPORARILY_UNAVAILABLE = 480  # ring, no answer
    BUSY_HERE = 486  # user busy
    REQUEST_TERMINATED = 487  # cancelled by the caller while ringing: ring, no answer
    DECLINE = 603  # terminal reject


class Period(StrEnum):
    """A bucket of the report: the value is DuckDB's date_trunc unit."""

    HOUR = "hour"
    DAY = "day"


# The queries are put together from this module's constants and enum values only (S608);
# the range and the limits travel as parameters.
_CODES = ", ".join(str(int(c)) for c in EffectiveSipCode)

_CALLS = f"""
CREATE TEMP TABLE calls AS
SELECT coalesce(trunkFullyQualifiedDomainName, '(none)') AS sbc,
       startDateTime AS start_at,
       CASE WHEN endDateTime > startDateTime THEN endDateTime
            ELSE startDateTime + to_seconds(greatest(coalesce(duration, 0), 0)) END AS end_at,
       coalesce(successfulCall, false) AS answered,
       coalesce(successfulCall, false) OR coalesce(finalSipCode IN ({_CODES}), false) AS effective,
       duration, finalSipCode, callEndSubReason, finalSipCodePhrase,
       coalesce(mediaBypassEnabled, false) AS bypass
FROM dr WHERE startDateTime >= $since AND startDateTime < $until
"""  # noqa: S608

# Concurrency by a sweep over start (+1) and end (-1) events, ends first at the same instant;
# a mark (0) at each reported hour and day start carries in the calls already going on.
# A level is real after a start or at a mark (within a run of ends it is only passing).
_LEVELS = """
CREATE TEMP TABLE levels AS
WITH occupied AS (SELECT sbc, start_at, end_at FROM calls WHERE end_at > start_at),
events AS (
    SELECT sbc, start_at AS t, 1 AS d FROM occupied
    UNION ALL SELECT sbc, end_at, -1 FROM occupied
    UNION ALL SELECT DISTINCT sbc, date_trunc('hour', start_at), 0 FROM calls
    UNION ALL SELECT DISTINCT sbc, date_trunc('day', start_at), 0 FROM calls
),
running AS (
    SELECT sbc, t, d,
           sum(d) OVER (PARTITION BY sbc ORDER BY t, d
                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS level
    FROM events
)
SELECT sbc, t, level FROM running WHERE d >= 0
"""

_FIGURES = """
count(*) AS attempts,
count(*) FILTER (WHERE effective) AS effective,
round(100.0 * count(*) FILTER (WHERE effective) / count(*), 2) AS ner,
count(*) < $low_volume AS low_volume,
count(*) FILTER (WHERE answered) AS answered,
round(avg(duration) FILTER (WHERE answered), 2) AS avg_duration_s,
count(*) FILTER (WHERE answered AND duration < $short) AS short_calls,
round(100.0 * count(*) FILTER (WHERE answered AND duration < $short)
      / nullif(count(*) FILTER (WHERE answered), 0), 2) AS short_calls_pct,
round(100.0 * count(*) FILTER (WHERE bypass) / count(*), 2) AS media_bypass_pct
"""


def _by_period(period: Period) -> str:
    unit = period.value
    return f"""
WITH f AS (
    SELECT sbc, date_trunc('{unit}', start_at) AS {unit}, {_FIGURES}
    FROM calls GROUP BY ALL
),
p AS (SELECT sbc, date_trunc('{unit}', t) AS {unit}, max(level) AS peak_concurrent
      FROM levels GROUP BY ALL)
SELECT f.*, coalesce(p.peak_concurrent, 0) AS peak_concurrent
FROM f LEFT JOIN p USING (sbc, {unit})
ORDER BY sbc, {unit}
"""  # noqa: S608


_PER_SBC = f"""
WITH f AS (SELECT sbc, {_FIGURES} FROM calls GROUP BY sbc),
p AS (SELECT sbc, max(level) AS peak_concurrent, first(t ORDER BY level DESC, t) AS peak_at
      FROM levels GROUP BY sbc)
SELECT f.*, coalesce(p.peak_concurrent, 0) AS peak_concurrent,
       CASE WHEN p.peak_concurrent > 0 THEN p.peak_at END AS peak_at
FROM f LEFT JOIN p USING (sbc)
ORDER BY sbc
"""  # noqa: S608

_SIP_CODES = """
SELECT sbc, finalSipCode AS sip_code, callEndSubReason AS sub_reason,
       coalesce(min(finalSipCodePhrase), '') AS phrase,
       count(*) AS calls,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY sbc), 2) AS pct,
       bool_and(effective) AS network_effective
FROM calls
GROUP BY sbc, finalSipCode, callEndSubReason
QUALIFY row_number() OVER (
    PARTITION BY sbc ORDER BY count(*) DESC, finalSipCode NULLS LAST, callEndSubReason
) <= $top
ORDER BY sbc, calls DESC, sip_code NULLS LAST, sub_reason
"""


def _records(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _mark_provisional(rows: list[dict[str, Any]], period: Period, settled: datetime) -> None:
    """``provisional``: the bucket ends after ``settled`` (rows for it may still appear)."""
    length = timedelta(hours=1) if period is Period.HOUR else timedelta(days=1)
    for row in rows:
        row["provisional"] = row[period.value] + length > settled


def _iso(value: Any) -> Any:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Timestamps as ISO 8601 UTC strings, so the report is JSON as it is."""
    return [{k: _iso(v) for k, v in row.items()} for row in rows]


def sbc_health(
    folder: Path,
    since: datetime,
    until: datetime,
    *,
    settled_before: datetime,
    top: int = TOP_SIP_CODES,
) -> dict[str, Any]:
    """The report for calls that started in [since, until), from the Hive-partitioned
    ``direct_routing_calls`` folder (``folder/date=…/*.parquet``); buckets ending after
    ``settled_before`` are provisional."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # hours and days are UTC ones
        glob = str(folder / "*" / "*.parquet")
        con.read_parquet(glob, hive_partitioning=True).create_view("dr")
        window = {"since": since.astimezone(UTC), "until": until.astimezone(UTC)}
        con.execute(_CALLS, window)
        con.execute(_LEVELS)
        figures = {"low_volume": LOW_VOLUME_ATTEMPTS, "short": SHORT_CALL_SECONDS}
        sbcs = _plain(_records(con.execute(_PER_SBC, figures)))
        days = _records(con.execute(_by_period(Period.DAY), figures))
        hours = _records(con.execute(_by_period(Period.HOUR), figures))
        codes = _records(con.execute(_SIP_CODES, {"top": top}))
    finally:
        con.close()
    settled = settled_before.astimezone(UTC)
    _mark_provisional(days, Period.DAY, settled)
    _mark_provisional(hours, Period.HOUR, settled)
    unsettled = {d["sbc"] for d in days if d["provisional"]}
    for sbc in sbcs:
        sbc["provisional"] = sbc["sbc"] in unsettled
        sbc["top_sip_codes"] = [
            {k: v for k, v in c.items() if k != "sbc"} for c in codes if c["sbc"] == sbc["sbc"]
        ]
    return {
        "since": since.astimezone(UTC).isoformat(),
        "until": until.astimezone(UTC).isoformat(),
        "low_volume_below": LOW_VOLUME_ATTEMPTS,
        "network_effective_sip_codes": sorted(int(c) for c in EffectiveSipCode),
        "short_call_seconds": SHORT_CALL_SECONDS,
        "settled_before": settled.isoformat(),
        "sbcs": sbcs,
        "days": _plain(days),
        "hours": _plain(hours),
    }
