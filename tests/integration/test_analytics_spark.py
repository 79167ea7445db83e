"""The report's SQL on Spark (what Fabric, Synapse Spark pools and Databricks run), in local
mode over the same Parquet tables as DuckDB: the same figures, and the hand-made ones.

Needs Java (Debian's headless JRE: `make java`, which `make test` runs) and PySpark
(requirements-dev.txt); without Java the test skips, saying why. One small Spark session
(local[1], one shuffle partition, no UI) serves the whole module."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from callrecords.analytics.buildings import parse_buildings
from callrecords.analytics.queries import BUILDING_COLUMNS, Dimension, view_statements
from callrecords.analytics.report import building_rows, compute, quality_report
from shared.analytics.rebuild import DayWriter
from shared.analytics.rules import RULE_SETS, Dialect, RuleSetName
from shared.analytics.tables import flatten
from tests import analytics_fixture as fx

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="no Java runtime (Debian package default-jre-headless; `make java` installs it)",
)

SINCE = datetime(2026, 11, 2, tzinfo=UTC)
UNTIL = datetime(2026, 11, 3, tzinfo=UTC)


def write_tables(directory: Path, records: list[dict[str, Any]]) -> None:
    """The tables as the rebuild writes them (DayWriter), in the Hive layout of a local copy."""
    writer = DayWriter(directory)
    for record in records:
        writer.add(flatten(record))
    for name, path in writer.close().items():
        target = directory / name / f"date={fx.DAY.isoformat()}"
        target.mkdir(parents=True)
        shutil.move(path, target / "part-0.parquet")


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tables")
    write_tables(directory, fx.records())
    return directory


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("callrecords-report-test")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.adaptive.enabled", "false")
        # a few rows: compiling generated code for each query costs more than it saves
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
        .config("spark.ui.showConsoleProgress", "false")
        # a short-lived JVM: the quick compiler only, one small serial heap
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def inputs(spark: Any, tables: Path) -> Path:
    """The three inputs registered once: the Parquet tables, and building_of for the addresses
    they hold (read with pyarrow: the same mapping the DuckDB report builds)."""
    spark.read.parquet(str(tables / "streams")).createOrReplaceTempView("raw_streams")
    spark.read.parquet(str(tables / "segments")).createOrReplaceTempView("raw_segments")
    addresses: set[str] = set()
    for table in ("streams", "segments"):
        data = pq.read_table(tables / table)
        for side in ("caller", "callee"):
            for column in ("subnet", "ip_address"):
                addresses.update(a for a in data.column(f"{side}_{column}").to_pylist() if a)
    rows = building_rows(parse_buildings(fx.BUILDINGS_CSV), sorted(addresses))
    schema = ", ".join(
        f"{name} {'BOOLEAN' if kind == 'BOOLEAN' else 'STRING'}" for name, kind in BUILDING_COLUMNS
    )
    spark.createDataFrame(rows, schema).createOrReplaceTempView("building_of")
    return tables


def spark_report(spark: Any, rules: RuleSetName, by: Dimension, by_reliability: bool) -> Any:
    """The same report as quality_report(), with Spark SQL running the generated queries."""
    for statement in view_statements(Dialect.SPARK, RULE_SETS[rules], SINCE, UNTIL):
        spark.sql(statement)

    def run(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in spark.sql(sql).collect()]

    return compute(run, Dialect.SPARK, SINCE, UNTIL, rules, by, 10, by_reliability, True)


def same(a: Any, b: Any) -> bool:
    """Equal, floats within rounding."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(
    ("rules", "by", "by_reliability"),
    [
        (RuleSetName.CQD, Dimension.NETWORK, False),
        (RuleSetName.CQD, Dimension.BUILDING, True),
        (RuleSetName.CQD, Dimension.USER, False),
        (RuleSetName.CLASSIC, Dimension.SCENARIO, False),
    ],
)
def test_spark_gives_duckdbs_figures(
    spark: Any, inputs: Path, rules: RuleSetName, by: Dimension, by_reliability: bool
) -> None:
    tables = inputs
    buildings = parse_buildings(fx.BUILDINGS_CSV)
    duck = quality_report(
        tables,
        SINCE,
        UNTIL,
        rules,
        by,
        buildings=buildings,
        by_reliability=by_reliability,
        missing_subnets=True,
    ).as_dict()
    sparks = spark_report(spark, rules, by, by_reliability).as_dict()
    assert duck["by"], "the report has rows to compare"
    for key in duck:
        assert same(sparks[key], duck[key]), (key, sparks[key], duck[key])
    if rules is RuleSetName.CQD:  # and both are the figures worked out by hand
        assert duck["reliability"] | fx.RELIABILITY == duck["reliability"]
        assert duck["poor_due_to"] == fx.POOR_DUE_TO
        assert duck["missing_subnets"] == fx.MISSING_SUBNETS
        if by.value in fx.BY:
            expected = fx.BY[by.value]
            assert [g["key"] for g in sparks["by"]] == (
                fx.BY_BUILDING_RELIABILITY if by_reliability else [r["key"] for r in expected]
            )
            for got in sparks["by"]:
                want = next(r for r in expected if r["key"] == got["key"])
                assert same({k: got[k] for k in want}, want), got["key"]
