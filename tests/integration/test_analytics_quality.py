"""Reliability, breakdowns with the QER targets, the building file and the missing-subnet list,
on the hand-made records of tests/analytics_fixture.py: archived in Azurite, tabulated, then
every figure through `cli.py quality --json`, and the page looked at in headless Chromium."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.analytics.rebuild import tabulate
from tests import analytics_fixture as fx
from tests.integration.conftest import unique
from tests.integration.helpers import chromium, dump_dom
from tests.integration.test_analytics_tables import archive
from tests.integration.test_cli import one_error_line, run_cli


@pytest.fixture
async def copy(make_runtime, tmp_path) -> Path:
    """The fixture's records archived, tabulated, and the tables copied locally (--tables)."""
    rt: Any = make_runtime(ANALYTICS_CONTAINER=unique("t"))
    await rt.archive.container.create_container()
    for doc in fx.records():
        await archive(rt, doc)
    state = await tabulate(rt.archive.container, rt.tables, [fx.DAY])
    assert [(r.records, r.segments, r.streams) for r in state.results] == [(3, 10, 18)]
    directory = tmp_path / "tables"
    async for blob in rt.tables.list_blobs():
        target = directory / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await (await rt.tables.download_blob(blob.name)).readall())
    return directory


def quality(copy: Path, buildings: Path | None, *args: str) -> dict[str, Any]:
    more = ["--buildings", str(buildings)] if buildings else []
    result = run_cli(
        "quality", "--since", fx.SINCE, "--until", fx.UNTIL, "--tables", str(copy), *more, *args
    )
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout) if "--json" in args else {"text": result.stdout}


def same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=1e-12), (key, got[key], value)
        else:
            assert got[key] == value, (got["key"] if "key" in got else "", key, got[key], value)


async def test_every_rate_count_and_flag_matches_the_hand_figures(copy, tmp_path) -> None:
    buildings = tmp_path / "buildings.csv"
    buildings.write_text(fx.BUILDINGS_CSV)
    for dim, rows in fx.BY.items():
        report = quality(copy, buildings, "--by", dim, "--json", "--missing-subnets")
        assert [g["key"] for g in report["by"]] == [r["key"] for r in rows], dim
        for got, want in zip(report["by"], rows, strict=True):
            same(got, want)
        same(report, fx.TOTALS)
        same(report["reliability"], fx.RELIABILITY)
        assert report["poor_due_to"] == fx.POOR_DUE_TO
        assert report["missing_subnets"] == fx.MISSING_SUBNETS
    users = {g["key"]: g.get("label") for g in quality(copy, buildings, "--json")["by"]}
    assert users["u-erin"] == "Erin" and users["u-frank"] == "Frank"  # from a segment alone

    ranked = quality(copy, buildings, "--by", "building", "--reliability", "--json")
    assert [g["key"] for g in ranked["by"]] == fx.BY_BUILDING_RELIABILITY

    # CQD's file as its upload takes it: tab-separated, no header, the VPN column left out
    tsv = tmp_path / "buildings.tsv"
    tsv.write_text(
        "\n".join(
            "\t".join(line.split(",")[:14])
            for line in fx.BUILDINGS_CSV.splitlines()[1:]
            if not line.startswith("10.9.")
        )
        + "\n"
    )
    by_country = quality(copy, tsv, "--by", "country", "--json", "--missing-subnets")
    countries = {g["key"]: g for g in by_country["by"]}
    assert set(countries) == {"US", "NO", "(not in building file)"}
    assert (countries["US"]["streams"], countries["US"]["segments"]) == (2, 2)  # HQ only now
    subnets = {m["subnet"]: m["audio_streams"] for m in by_country["missing_subnets"]}
    assert subnets == {"192.168.1.0": 10}  # 10.9.0.0 has 3 audio streams: under 10

    # without a building file: nothing is inside, every row is judged on the overall targets
    plain = quality(copy, None, "--by", "network", "--json")
    assert {g["targets"] for g in plain["by"]} == {"overall"}
    text = quality(copy, buildings, "--by", "network", "--missing-subnets")["text"]
    assert "setup failed    20.0%  2 of 10 segments; target <= 1.0% MISSED" in text
    assert "dropped         12.5%  1 of 8 set up; target <= 3.0% MISSED" in text
    assert "poor due to  round_trip 2, packet_loss 1, jitter 2, frame_rate 1" in text
    assert re.search(r"^  192\.168\.1\.0 +10$", text, re.M)


async def test_the_sql_for_other_engines_is_printed_without_tables() -> None:
    for dialect, marker in (
        ("spark", "date_format(segment_start, 'yyyy-MM-dd')"),
        ("duckdb", "TIMESTAMPTZ '2026-11-02 00:00:00.000000+00:00'"),
        ("kql", ".create-or-alter function"),
    ):
        result = run_cli(
            "quality", "--since", fx.SINCE, "--until", fx.UNTIL, "--by", "day", "--sql", dialect
        )
        assert result.returncode == 0, result.stderr
        assert marker in result.stdout


def test_building_file_mistakes_are_one_line(tmp_path, copy) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("10.1.0.0,HQ,16,HQ,,,,Seattle,,US,,NA,yes,0,0\n")
    result = run_cli(
        "quality", "--since", fx.SINCE, "--until", fx.UNTIL, "--tables", str(copy),
        "--buildings", str(bad),
    )  # fmt: skip
    assert result.returncode == 2
    assert "line 1: InsideCorp must be 0 or 1, found 'yes'" in one_error_line(result)
    result = run_cli("quality", "--since", "1d", "--by", "inside")
    assert result.returncode == 2 and "--by inside needs a building file" in result.stderr


def _cell(dom: str, key: str, measure: str) -> str:
    row = re.search(rf'<tr data-key="{re.escape(key)}">(.*?)</tr>', dom, re.S)
    assert row, key
    cell = re.search(rf'<td (?:class="(\w+)" )?data-measure="{measure}"[^>]*>([^<]*)</td>', row[1])
    assert cell, (key, measure)
    return f"{cell[1] or ''}:{cell[2]}"


@pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (Debian package `chromium`; `make test` installs "
    "it when it can use apt-get)",
)
async def test_the_page_shows_the_hand_figures_in_chromium(copy, tmp_path) -> None:
    buildings = tmp_path / "buildings.csv"
    buildings.write_text(fx.BUILDINGS_CSV)
    page = tmp_path / "q.html"
    quality(copy, buildings, "--by", "network", "--missing-subnets", "--html", str(page))
    dom = dump_dom(page)
    # every row's three rates with met / missed, as worked out in the fixture
    words = {True: "met", False: "missed"}
    for want in fx.BY["network"]:
        for measure, rate in (
            ("poor_rate", want["audio_poor_rate"]),
            ("setup_failure_rate", want["setup_failure_rate"]),
            ("drop_failure_rate", want["drop_failure_rate"]),
        ):
            met = want[f"{measure}_met"]
            # class:text of the cell; nothing to rate: no class, a dash
            shown = ":-" if met is None else f"{words[met]}:{rate * 100:.1f}% ({words[met]})"
            assert _cell(dom, want["key"], measure) == shown, (want["key"], measure)
        # and the counts behind them: audio poor / classified, failed / segments, drops / set up
        row = re.search(rf'<tr data-key="{re.escape(want["key"])}">(.*?)</tr>', dom, re.S)
        assert row
        counts = [
            f"{want['audio_poor']} / {want['audio_streams']}",
            f"{want['setup_failures']} / {want['segments']}",
            f"{want['drops']} / {want['set_up']}",
        ]
        assert re.findall(r"<td>(\d+ / \d+)</td>", row[1]) == counts, want["key"]
        assert f"<td>{want['targets']}</td>" in row[1]
    reliability = re.search(r'<table class="reliability">(.*?)</table>', dom, re.S)
    assert reliability
    assert '<td class="missed" data-measure="setup_failure_rate"' in reliability[1]
    assert "20.0% (missed)" in reliability[1] and "12.5% (missed)" in reliability[1]
    for reason, n in fx.POOR_DUE_TO.items():
        assert f'<tr data-reason="{reason}"><td>{reason}</td><td>{n}</td></tr>' in dom
    assert '<tr data-subnet="192.168.1.0"><td>192.168.1.0</td><td>10</td></tr>' in dom
