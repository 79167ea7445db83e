"""The report's SQL, generated for each engine from the rule table (shared/analytics/rules.py):
DuckDB runs it on one machine (report.py), Spark SQL runs the same text in Fabric, Synapse
Spark pools and Databricks (docs/analytics.md; tests/integration/test_analytics_spark.py
checks both give the same figures).

Three relations go in: ``raw_streams`` and ``raw_segments`` (the Parquet tables) and
``building_of (address, building, network_name, city, country, region, inside_corp, vpn)``
(the building file's rows for the addresses the window holds, mapped by Python's longest
prefix match: buildings.py). The views ``s`` (streams, classified) and ``g`` (segments) of one
window come out, and every query below reads them. The two dialects differ only in the
timestamp literal and the day format; everything else is plain SQL both engines run as it is.
Every fragment comes from code (rule tables, enums, integers, datetimes), never from input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import pyarrow as pa

from shared.analytics.rules import (
    Dialect,
    RuleSet,
    classification_sql,
    poor_due_to_sql,
    reasons,
)

UNKNOWN = "(unknown)"
NOT_IN_BUILDING_FILE = "(not in building file)"
MISSING_SUBNET_STREAMS = 10  # CQD's Missing Subnet Report: subnets with 10 or more audio streams

BUILDING_COLUMNS = (
    ("address", "VARCHAR"),
    ("building", "VARCHAR"),
    ("network_name", "VARCHAR"),
    ("city", "VARCHAR"),
    ("country", "VARCHAR"),
    ("region", "VARCHAR"),
    ("inside_corp", "BOOLEAN"),
    ("vpn", "BOOLEAN"),
)
_BUILDING_FIELDS = ", ".join(f"b.{name}" for name, _ in BUILDING_COLUMNS[1:])
# A stream or segment belongs to its caller's network (as the user and subnet dimensions).
_ADDRESS = "COALESCE(r.caller_subnet, r.caller_ip_address)"


class Dimension(StrEnum):
    USER = "user"
    SUBNET = "subnet"
    BUILDING = "building"
    CITY = "city"
    COUNTRY = "country"
    REGION = "region"
    PLATFORM = "platform"
    DAY = "day"
    NETWORK = "network"
    INSIDE = "inside"
    VPN = "vpn"
    SCENARIO = "scenario"

    @property
    def needs_buildings(self) -> bool:
        return self in _FROM_BUILDING_FILE

    @property
    def categorical(self) -> bool:
        """A few fixed keys, every one shown in key order (not the worst N)."""
        return self in (Dimension.NETWORK, Dimension.INSIDE, Dimension.VPN, Dimension.SCENARIO)


_FROM_BUILDING_FILE = {
    Dimension.BUILDING,
    Dimension.CITY,
    Dimension.COUNTRY,
    Dimension.REGION,
    Dimension.INSIDE,
    Dimension.VPN,
}


def _ts(dialect: Dialect, t: datetime) -> str:
    text = t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if dialect is Dialect.DUCKDB:
        return f"TIMESTAMPTZ '{text}+00:00'"
    return f"TIMESTAMP '{text}Z'"


def day_sql(dialect: Dialect, column: str = "segment_start") -> str:
    if dialect is Dialect.DUCKDB:
        return f"strftime({column}, '%Y-%m-%d')"
    return f"date_format({column}, 'yyyy-MM-dd')"


def key_sql(dialect: Dialect, dimension: Dimension) -> str:
    """The dimension's key for a row of ``s`` or ``g`` (the same columns in both)."""
    missing = NOT_IN_BUILDING_FILE if dimension.needs_buildings else UNKNOWN
    raw = {
        Dimension.USER: "caller_user_id",
        Dimension.SUBNET: "caller_subnet",
        Dimension.PLATFORM: "caller_platform",
        Dimension.DAY: day_sql(dialect),
        Dimension.BUILDING: "building",
        Dimension.CITY: "city",
        Dimension.COUNTRY: "country",
        Dimension.REGION: "region",
        Dimension.NETWORK: "caller_network",
        # CQD counts a subnet the building file does not map as outside
        Dimension.INSIDE: "CASE WHEN inside_corp THEN 'inside' ELSE 'outside' END",
        Dimension.VPN: "CASE WHEN vpn THEN 'vpn' ELSE 'not vpn' END",
        Dimension.SCENARIO: "concat(scenario, ', ', endpoints)",
    }[dimension]
    return f"COALESCE({raw}, '{missing}')"


def view_statements(
    dialect: Dialect, rules: RuleSet, since: datetime, until: datetime
) -> list[str]:
    """The window's views ``s`` and ``g`` over raw_streams, raw_segments and building_of."""
    window = f"r.segment_start >= {_ts(dialect, since)} AND r.segment_start < {_ts(dialect, until)}"
    due = ", ".join(
        f"CASE WHEN {poor_due_to_sql(rules, reason)} THEN 1 ELSE 0 END AS due_{reason}"
        for reason in reasons(rules)
    )
    return [
        "CREATE OR REPLACE TEMP VIEW s0 AS "
        f"SELECT r.*, {classification_sql(rules, 'r.stream_kind')} AS cls, {_BUILDING_FIELDS} "
        f"FROM raw_streams r LEFT JOIN building_of b ON b.address = {_ADDRESS} WHERE {window}",
        f"CREATE OR REPLACE TEMP VIEW s AS SELECT *, {due} FROM s0",
        "CREATE OR REPLACE TEMP VIEW g AS "
        f"SELECT r.*, {_BUILDING_FIELDS} FROM raw_segments r "
        f"LEFT JOIN building_of b ON b.address = {_ADDRESS} WHERE {window}",
    ]


def addresses_sql(dialect: Dialect, since: datetime, until: datetime) -> str:
    """Every address (subnet or IP) of either side in the window: what building_of maps."""
    window = f"segment_start >= {_ts(dialect, since)} AND segment_start < {_ts(dialect, until)}"
    sides = " UNION ".join(
        f"SELECT {side}_{col} AS a FROM {table} WHERE {window}"
        for table in ("raw_streams", "raw_segments")
        for side in ("caller", "callee")
        for col in ("subnet", "ip_address")
    )
    return f"SELECT DISTINCT a FROM ({sides}) x WHERE a IS NOT NULL ORDER BY a"


def kinds_sql() -> str:
    return (
        "SELECT stream_kind, count(*), "
        "SUM(CASE WHEN cls <> 'unclassified' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN cls = 'poor' THEN 1 ELSE 0 END) "
        "FROM s GROUP BY stream_kind ORDER BY stream_kind"
    )


def poor_due_to_sql_all(rules: RuleSet) -> str:
    """Poor streams per reason over the window (a stream may count under several)."""
    sums = ", ".join(f"SUM(due_{r})" for r in reasons(rules))
    return f"SELECT {sums} FROM s"


def reliability_sql() -> str:
    """Segments, setup failures and drops over the window."""
    return (
        "SELECT count(*), SUM(CASE WHEN setup_failed THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN dropped THEN 1 ELSE 0 END) FROM g"
    )


def by_sql(
    dialect: Dialect, rules: RuleSet, dimension: Dimension, top: int, by_reliability: bool
) -> str:
    """One row per key: classified / poor streams (all kinds), the audio ones, poor due to
    each reason, segments / setup failures / drops, and whether every row is inside."""
    key = key_sql(dialect, dimension)
    label = "max(caller_display_name)" if dimension is Dimension.USER else "NULL"
    due = "".join(f", SUM(due_{r}) AS due_{r}" for r in reasons(rules))
    due_out = "".join(f", COALESCE(st.due_{r}, 0) AS due_{r}" for r in reasons(rules))
    inside = "MIN(CASE WHEN inside_corp THEN 1 ELSE 0 END)"
    if dimension.categorical:
        order = "k"
    elif by_reliability:
        order = "setup_failures + drops DESC, segments DESC, k"
    else:
        order = "poor DESC, poor_rate DESC NULLS LAST, streams DESC, k"
    limit = "" if dimension.categorical else f" LIMIT {int(top)}"
    return (
        f"WITH st AS (SELECT {key} AS k, {label} AS label, "
        "SUM(CASE WHEN cls <> 'unclassified' THEN 1 ELSE 0 END) AS streams, "
        "SUM(CASE WHEN cls = 'poor' THEN 1 ELSE 0 END) AS poor, "
        "SUM(CASE WHEN stream_kind = 'audio' AND cls <> 'unclassified' THEN 1 ELSE 0 END) "
        "AS audio_streams, "
        "SUM(CASE WHEN stream_kind = 'audio' AND cls = 'poor' THEN 1 ELSE 0 END) AS audio_poor, "
        f"{inside} AS inside{due} FROM s GROUP BY {key}), "
        f"sg AS (SELECT {key} AS k, {label} AS label, count(*) AS segments, "
        "SUM(CASE WHEN setup_failed THEN 1 ELSE 0 END) AS setup_failures, "
        "SUM(CASE WHEN dropped THEN 1 ELSE 0 END) AS drops, "
        f"{inside} AS inside FROM g GROUP BY {key}), "
        "j AS (SELECT COALESCE(st.k, sg.k) AS k, COALESCE(st.label, sg.label) AS label, "
        "COALESCE(st.streams, 0) AS streams, COALESCE(st.poor, 0) AS poor, "
        "COALESCE(st.audio_streams, 0) AS audio_streams, "
        "COALESCE(st.audio_poor, 0) AS audio_poor, "
        "COALESCE(sg.segments, 0) AS segments, COALESCE(sg.setup_failures, 0) AS setup_failures, "
        "COALESCE(sg.drops, 0) AS drops, "
        "LEAST(COALESCE(st.inside, 1), COALESCE(sg.inside, 1)) AS inside"
        f"{due_out} FROM st FULL OUTER JOIN sg ON st.k = sg.k) "
        "SELECT *, CAST(poor AS DOUBLE) / NULLIF(streams, 0) AS poor_rate, "
        "CAST(audio_poor AS DOUBLE) / NULLIF(audio_streams, 0) AS audio_poor_rate, "
        "CAST(setup_failures AS DOUBLE) / NULLIF(segments, 0) AS setup_failure_rate, "
        "CAST(drops AS DOUBLE) / NULLIF(segments - setup_failures, 0) AS drop_failure_rate "
        f"FROM j ORDER BY {order}{limit}"
    )


def daily_sql(dialect: Dialect, audio_only: bool) -> str:
    day = day_sql(dialect)
    kind = " AND stream_kind = 'audio'" if audio_only else ""
    return (
        f"SELECT {day} AS d, count(*), SUM(CASE WHEN cls = 'poor' THEN 1 ELSE 0 END) "
        f"FROM s WHERE cls <> 'unclassified'{kind} GROUP BY {day} ORDER BY d"
    )


def missing_subnets_sql(minimum: int = MISSING_SUBNET_STREAMS) -> str:
    """CQD's Missing Subnet Report: client subnets (either side of an audio stream) with at
    least ``minimum`` audio streams that the building file does not map."""
    sides = " UNION ALL ".join(
        f"SELECT {side}_subnet AS subnet FROM s WHERE stream_kind = 'audio' "
        f"AND COALESCE({side}_endpoint, '') <> 'server'"
        for side in ("caller", "callee")
    )
    return (
        f"SELECT x.subnet, count(*) AS n FROM ({sides}) x "
        "LEFT JOIN building_of b ON b.address = x.subnet "
        "WHERE x.subnet IS NOT NULL AND b.building IS NULL "
        f"GROUP BY x.subnet HAVING count(*) >= {int(minimum)} ORDER BY n DESC, x.subnet"
    )


def _kusto_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "datetime"
    if pa.types.is_floating(kind):
        return "real"
    if pa.types.is_integer(kind):
        return "long"
    if pa.types.is_boolean(kind):
        return "bool"
    return "string"


def kusto_external_table(name: str, table: str, schema: pa.Schema) -> str:
    """The Data Explorer external table over one of the Parquet tables, its columns from the
    table's schema, partitioned by the ``date=`` folder (docs/analytics.md)."""
    types: list[pa.DataType] = list(schema.types)
    columns = ", ".join(
        f"{name}:{_kusto_type(kind)}" for name, kind in zip(schema.names, types, strict=True)
    )
    return (
        f".create-or-alter external table {name} ({columns})\n"
        "kind = storage\n"
        "partition by (Date:datetime)\n"
        'pathformat = ("date=" datetime_pattern("yyyy-MM-dd", Date))\n'
        "dataformat = parquet\n"
        f"(h@'https://<account>.blob.core.windows.net/callrecords-tables/{table};"
        "managed_identity=system')\n"
    )
