"""The analysis tables over Azurite: built from the archive's latest versions only, rebuilt
idempotently, only changed days by the timer; the report against an independent computation;
the page looked at in headless Chromium; the CLI's one-line errors."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from azure.storage.blob import ContainerClient

from shared.analytics.rebuild import (
    list_day,
    rebuild_changed_days,
    table_blob,
    tabulate,
)
from shared.clock import utc_days, utcnow
from tests.integration.conftest import unique
from tests.integration.helpers import chromium, chromium_flags
from tests.integration.test_cli import one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("calls", "streams", "segments", "participants")


# ---------------------------------------------------------------- independent reference
# Written from the CQD page, separately from shared/analytics: plain loops over the JSON.


def _ms(value: Any) -> float | None:
    m = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", value) if isinstance(value, str) else None
    return float(m.group(1)) * 1000 if m else None


def reference_class(label: str, s: dict[str, Any], rules: str) -> str:
    if label == "main-audio":
        rtt, loss, jitter = (
            _ms(s.get("averageRoundTripTime")),
            s.get("averagePacketLossRate"),
            _ms(s.get("averageJitter")),
        )
        deg, conc = s.get("averageAudioDegradation"), s.get("averageRatioOfConcealedSamples")
        checks = [(rtt, 500), (loss, 0.1), (jitter, 30)]
        if rules == "classic":
            checks += [(deg, 1.0), (conc, 0.07)]
        if all(v is None for v, _ in checks):
            return "unclassified"
        bad = any(v is not None and v > limit for v, limit in checks)
        if rules == "cqd" and not ((s.get("packetUtilization") or 0) > 500):
            bad = False
        return "poor" if bad else "good"
    if label in ("main-video", "applicationsharing-video"):
        low_rate = 7 if label == "main-video" else 2
        loss_pct = s.get("averageVideoFrameLossPercentage")
        rate = s.get("averageVideoFrameRate")
        fec = s.get("postForwardErrorCorrectionPacketLossRate")
        if loss_pct is not None:
            return "poor" if loss_pct > 50 else "good"
        if rate is not None:
            return "poor" if rate < low_rate else "good"
        if fec is not None:
            return "poor" if fec > 0.15 else "good"
    return "unclassified"


def reference_report(docs: list[dict[str, Any]], rules: str) -> dict[str, Any]:
    streams = classified = poor = 0
    per_user: dict[str, list[int]] = {}
    for doc in docs:
        for session in doc["sessions"]:
            for segment in session["segments"]:
                # a user's id only: a phone or guest caller has none (the report's "(unknown)")
                user = segment["caller"]["identity"].get("user") or {}
                uid = user.get("id") or "(unknown)"
                for media in segment["media"]:
                    for s in media["streams"]:
                        streams += 1
                        c = reference_class(media["label"], s, rules)
                        if c == "unclassified":
                            continue
                        classified += 1
                        poor += c == "poor"
                        counts = per_user.setdefault(uid, [0, 0])
                        counts[0] += 1
                        counts[1] += c == "poor"
    ranked = sorted(
        per_user.items(), key=lambda kv: (-kv[1][1], -kv[1][1] / kv[1][0], -kv[1][0], kv[0])
    )
    return {
        "streams": streams,
        "classified": classified,
        "poor": poor,
        "poor_rate": poor / classified if classified else None,
        "by": [{"key": k, "streams": n, "poor": p} for k, (n, p) in ranked[:10]],
    }


def stream_count(doc: dict[str, Any]) -> int:
    return sum(
        len(m["streams"]) for s in doc["sessions"] for g in s["segments"] for m in g["media"]
    )


# ---------------------------------------------------------------- the archive


async def archive(rt: Any, doc: dict[str, Any]) -> None:
    name, written = await rt.archive.write(doc, orjson.dumps(doc))
    assert written, name


def read_table(conn: str, container: str, blob: str) -> list[dict[str, Any]]:
    data = ContainerClient.from_connection_string(conn, container).download_blob(blob).readall()
    return pq.read_table(io.BytesIO(data)).to_pylist()


@pytest.fixture
async def tables_rt(make_runtime, sim) -> Any:
    """A runtime with its own archive and tables containers, the archive created."""
    rt: Any = make_runtime(ANALYTICS_CONTAINER=unique("t"))
    await rt.archive.container.create_container()
    return rt


async def make_records(rt: Any, sim: Any) -> dict[str, dict[str, Any]]:
    """Eight records over two UTC days; one archived in two versions, one with video and
    sharing in every session. Returns id -> latest document."""
    now = utcnow()
    latest: dict[str, dict[str, Any]] = {}
    for n in range(8):
        start = now - timedelta(hours=3 + n * 5)
        rid = sim.client.create_record(
            sessions=4 + n, participants=3 + n % 3, start=start, notify=False
        )["id"]
        doc = sim.client.expected(rid)
        await archive(rt, doc)
        if n == 2:  # a second version: more sessions, only this one counts
            sim.client.new_version(rid, notify=False)
            doc = sim.client.expected(rid)
            assert doc["version"] == 2
            await archive(rt, doc)
        latest[rid] = doc
    return latest


# ---------------------------------------------------------------- tests


async def test_tables_hold_the_latest_versions_only(tables_rt, sim, azurite) -> None:
    rt = tables_rt
    latest = await make_records(rt, sim)
    now = utcnow()
    days = utc_days(now - timedelta(days=2), now)
    # a blob that is not a record version, and a version blob that is not JSON: both ignored,
    # the day's other records still arrive (the newest day with records: in the first hours
    # after UTC midnight today has none)
    day = max(date.fromisoformat(doc["startDateTime"][:10]) for doc in latest.values())
    await rt.archive.container.upload_blob(f"{day:%Y/%m/%d}/notes.txt", b"hello")
    broken = f"{day:%Y/%m/%d}/00000000-0000-0000-0000-000000000001/v1.json"
    await rt.archive.container.upload_blob(broken, b"{not json")

    state = await tabulate(rt.archive.container, rt.tables, days)
    assert sum(r.skipped for r in state.results) == 1

    by_day: dict[str, list[dict[str, Any]]] = {}
    for doc in latest.values():
        by_day.setdefault(doc["startDateTime"][:10], []).append(doc)
    assert len(by_day) >= 2, "the records must span two UTC days"
    conn, container = azurite.connection_string, rt.settings.analytics_container
    for d, docs in by_day.items():
        calls = read_table(conn, container, f"calls/date={d}/part-0.parquet")
        streams = read_table(conn, container, f"streams/date={d}/part-0.parquet")
        people = read_table(conn, container, f"participants/date={d}/part-0.parquet")
        assert sorted((c["call_record_id"], c["version"]) for c in calls) == sorted(
            (doc["id"], doc["version"]) for doc in docs
        )
        assert len(streams) == sum(stream_count(doc) for doc in docs)
        assert len(people) == sum(len(doc["participants_v2"]) for doc in docs)
        segments = read_table(conn, container, f"segments/date={d}/part-0.parquet")
        assert len(segments) == sum(len(s["segments"]) for doc in docs for s in doc["sessions"])
        assert sum(s["stream_count"] for s in segments) == len(streams)
        # a user id is a user's id: phone and guest callers keep theirs in identity_id
        for s in streams:
            if s["caller_identity_type"] != "user":
                assert s["caller_user_id"] is None and s["caller_identity_id"]
        assert {s["version"] for s in streams} == {doc["version"] for doc in docs}
        for call in calls:
            doc = latest[call["call_record_id"]]
            assert call["session_count"] == len(doc["sessions"])
            assert call["stream_count"] == stream_count(doc)
            assert call["poor_stream_count"] == sum(
                1
                for s in streams
                if s["call_record_id"] == doc["id"] and s["classification"] == "poor"
            )
    two = next(doc for doc in latest.values() if doc["version"] == 2)
    d2 = two["startDateTime"][:10]
    assert len(read_table(conn, container, f"calls/date={d2}/part-0.parquet")) == len(by_day[d2])

    # rebuilding is idempotent: the same rows, one blob per table and day
    again = await tabulate(rt.archive.container, rt.tables, days)
    assert [(r.day, r.calls, r.streams, r.participants) for r in again.results] == [
        (r.day, r.calls, r.streams, r.participants) for r in state.results
    ]
    names = [b.name async for b in rt.tables.list_blobs()]
    assert sorted(names) == sorted(
        table_blob(t, r.day) for r in state.results if r.records for t in TABLES
    )

    # the timer: nothing changed, nothing rebuilt; a new version rebuilds its day only
    assert (await rebuild_changed_days(rt.archive.container, rt.tables)).days_done == 0
    sim.client.new_version(two["id"], notify=False)
    three = sim.client.expected(two["id"])
    await archive(rt, three)
    rebuilt = await rebuild_changed_days(rt.archive.container, rt.tables)
    assert [str(r.day) for r in rebuilt.results] == [d2]
    versions = {
        c["call_record_id"]: c["version"]
        for c in read_table(conn, container, f"calls/date={d2}/part-0.parquet")
    }
    assert versions[two["id"]] == 3
    assert (await rebuild_changed_days(rt.archive.container, rt.tables)).days_done == 0
    listing = await list_day(rt.archive.container, rebuilt.results[0].day)
    assert listing.latest[two["id"]][0] == 3


async def test_cli_tabulate_and_report_match_an_independent_count(
    tables_rt, sim, azurite, tmp_path
) -> None:
    rt = tables_rt
    latest = await make_records(rt, sim)
    env = {
        "ARCHIVE_CONTAINER": rt.settings.archive_container,
        "ANALYTICS_CONTAINER": rt.settings.analytics_container,
    }
    done = run_cli("tabulate", "--since", "2d", **env)
    assert done.returncode == 0, done.stderr
    total_streams = sum(stream_count(d) for d in latest.values())
    assert f"{len(latest)} records (latest versions)" in done.stdout
    assert f"{total_streams:,} streams" in done.stdout
    assert "tabulate:" in done.stderr and "done (100%)" in done.stderr  # progress, not a tty

    cache = tmp_path / "cache"
    for rules in ("cqd", "classic"):
        result = run_cli(
            "quality", "--since", "2d", "--json", "--rules", rules, "--cache", str(cache), **env
        )
        assert result.returncode == 0, result.stderr
        report = orjson.loads(result.stdout)
        expected = reference_report(list(latest.values()), rules)
        assert report["streams"] == expected["streams"] == total_streams
        assert (report["classified"], report["poor"]) == (expected["classified"], expected["poor"])
        assert report["poor_rate"] == pytest.approx(expected["poor_rate"])
        assert [{k: g[k] for k in ("key", "streams", "poor")} for g in report["by"]] == expected[
            "by"
        ]
        assert report["rules"] == rules
    # the second run used the cache
    assert "0 fetched" in result.stderr

    text = run_cli("quality", "--since", "2d", "--by", "subnet", "--cache", str(cache), **env)
    assert text.returncode == 0, text.stderr
    assert "Worst" in text.stdout and "by subnet" in text.stdout
    assert re.search(
        r"audio +\d+\.\d% +poor of [\d,]+ classified; Microsoft's target: <= 3%", text.stdout
    )

    buildings = tmp_path / "buildings.csv"
    buildings.write_text("10.10.0.0,HQ,16,HQ\n10.20.0.0,Branch,16,Branch\n")
    by_building = run_cli(
        "quality",
        "--since",
        "2d",
        "--by",
        "building",
        "--buildings",
        str(buildings),
        "--json",
        "--cache",
        str(cache),
        **env,
    )
    assert by_building.returncode == 0, by_building.stderr
    keys = {g["key"] for g in orjson.loads(by_building.stdout)["by"]}
    assert keys <= {"HQ", "Branch", "(not in building file)"} and "HQ" in keys


@pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (Debian package `chromium`; `make test` installs "
    "it when it can use apt-get)",
)
async def test_html_page_renders_in_chromium(tables_rt, sim, tmp_path) -> None:
    rt = tables_rt
    await make_records(rt, sim)
    now = utcnow()
    await tabulate(rt.archive.container, rt.tables, utc_days(now - timedelta(days=2), now))
    # a local copy of the tables, as --tables takes it: no settings, no storage
    copy = tmp_path / "tables"
    async for blob in rt.tables.list_blobs(name_starts_with="streams/"):
        target = copy / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await (await rt.tables.download_blob(blob.name)).readall())
    look_at_the_page(copy, tmp_path)


def look_at_the_page(copy: Path, tmp_path: Path) -> None:
    """cli.py quality --html over the local copy, then the page in headless Chromium."""
    page = tmp_path / "q.html"
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    result = subprocess.run(
        [
            sys.executable,
            "cli.py",
            "quality",
            "--since",
            "2d",
            "--tables",
            str(copy),
            "--html",
            str(page),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    with tempfile.TemporaryDirectory() as profile:
        flags = chromium_flags(profile)
        shot = tmp_path / "q.png"
        subprocess.run(
            [*flags, "--window-size=1150,1300", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            timeout=90,
            check=True,
        )
        dom = subprocess.run(
            [*flags, "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        ).stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    poor = re.search(r"^  poor +([\d,]+)$", result.stdout, re.M)
    assert poor, result.stdout
    assert "Poor stream rate per day" in dom and dom.count("<svg") == 2
    assert f'<div class="v">{poor.group(1)}</div><div class="l">poor</div>' in dom
    assert dom.count("<rect") >= 2  # the daily bars and the top-10 bars were drawn


def test_cli_errors_are_one_line(tmp_path) -> None:
    result = run_cli("quality", "--since", "1d", "--by", "building")
    assert result.returncode == 2 and "--by building needs a building file" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("quality", "--since", "1d", "--tables", str(empty))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no streams tables" in line and "python cli.py tabulate --since 1d" in line
    bad = tmp_path / "b.csv"
    bad.write_text("10.0.0.0,Net,24\n")
    (empty / "streams" / "date=2026-01-01").mkdir(parents=True)
    result = run_cli("quality", "--since", "1d", "--tables", str(empty), "--buildings", str(bad))
    assert result.returncode == 2
    assert "line 1: expected at least 4 columns" in one_error_line(result)
    result = run_cli("tabulate", "--since", "yesterday-ish")
    assert result.returncode == 2 and "neither a duration" in result.stderr


def test_tabulate_without_an_archive_is_one_line(app_env) -> None:
    result = run_cli(
        "tabulate",
        "--since",
        "1d",
        ARCHIVE_CONTAINER=unique("missing"),
        ANALYTICS_CONTAINER=unique("t"),
    )
    assert result.returncode == 1
    assert "archive container missing" in one_error_line(result)


def test_the_simulated_streams_are_good_poor_and_unclassified() -> None:
    """The reference above (and `make run`) see every class in what the simulator makes."""
    from devtools.graphsim import records

    spec = records.new_spec("r", seed=3, start=None, now=utcnow(), sessions=40, participants=5)
    spec.modalities = ["audio", "video", "screenSharing"]
    seen: Counter[str] = Counter()
    for session in records.sessions_slice(spec, "http://x", 0, 40):
        for segment in session["segments"]:
            for media in segment["media"]:
                for s in media["streams"]:
                    seen[reference_class(media["label"], s, "cqd")] += 1
    assert seen["good"] and seen["poor"] and seen["unclassified"]
