"""``callrecords usage health`` over a local copy of the direct_routing_calls table (no
storage): hand-made Direct Routing rows whose every figure was worked out by hand
(tests/dr_health_fixture.py), through the command's JSON, text and HTML."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from callrecords.cli import main
from callrecords.usage.sbc_health import sbc_health
from callrecords.usage.sbc_page import render_health
from callrecords.usage.tables import partition_name, to_table
from shared.usage.kinds import UsageKind
from tests import dr_health_fixture as fx


def write_tables(rows: list[dict], root: Path) -> Path:
    """The rows as the tables' layout: direct_routing_calls/date=YYYY-MM-DD/part-0.parquet."""
    by_day: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_day[row["startDateTime"][:10]].append(row)
    for day, day_rows in by_day.items():
        path = root / partition_name(UsageKind.DIRECT_ROUTING, date.fromisoformat(day))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_table(UsageKind.DIRECT_ROUTING, day_rows), path)
    return root


def health(tables: Path, *extra: str) -> list[str]:
    window = ["--since", fx.SINCE.isoformat(), "--until", fx.UNTIL.isoformat()]
    return ["usage", "health", *window, "--tables", str(tables), *extra]


def test_every_figure_matches_the_hand_made_ones(tmp_path: Path, capsys) -> None:
    tables = write_tables(fx.rows(), tmp_path / "tables")
    page = tmp_path / "health.html"
    assert main(health(tables, "--json", "--html", str(page))) == 0
    fx.check_report(json.loads(capsys.readouterr().out))
    html = page.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    fx.check_page(html)


def test_text_flags_the_low_volume_ner(tmp_path: Path, capsys) -> None:
    tables = write_tables(fx.rows(), tmp_path / "tables")
    assert main(health(tables)) == 0
    out = capsys.readouterr().out
    lines: dict[str, str] = {}
    for line in out.splitlines():  # the first table: one line per SBC
        if line.startswith("  sbc-"):
            lines.setdefault(line.split()[0], line)
    assert " 85.71* " in lines[fx.A] and " 95.00 " in lines[fx.B] and "*" not in lines[fx.B]
    assert "fewer than 100 attempts" in out and "Top final SIP codes, sbc-b.contoso.com" in out


def test_a_range_without_calls_and_a_missing_table(tmp_path: Path, capsys) -> None:
    tables = write_tables(fx.rows(), tmp_path / "tables")
    window = ["--since", "2024-10-01", "--until", "2024-10-02", "--tables", str(tables)]
    assert main(["usage", "health", *window, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sbcs"] == [] and report["hours"] == [] and report["days"] == []
    assert main(["usage", "health", "--since", "1d", "--tables", str(tmp_path), "--json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no direct_routing_calls/ folder in")
    with pytest.raises(SystemExit) as bad:
        main(health(tables, "--top", "0"))
    assert bad.value.code == 2 and "not a whole number of at least 1" in capsys.readouterr().err


def test_top_keeps_the_most_frequent_codes(tmp_path: Path, capsys) -> None:
    tables = write_tables(fx.rows(), tmp_path / "tables")
    assert main(health(tables, "--json", "--top", "2")) == 0
    report = json.loads(capsys.readouterr().out)
    top = {s["sbc"]: [c["sip_code"] for c in s["top_sip_codes"]] for s in report["sbcs"]}
    assert top == {fx.A: [0, 487], fx.B: [0, 486]}  # ties go to the lower code


def test_buckets_ending_after_the_settled_time_are_provisional(tmp_path: Path) -> None:
    """Rows appear up to 48 h late: a bucket that ends after settled_before may still grow, and
    says so in the JSON and on the page; the figures themselves do not change."""
    tables = write_tables(fx.rows(), tmp_path / "tables")
    settled = datetime(2024, 11, 3, 0, 30, tzinfo=UTC)
    folder = tables / UsageKind.DIRECT_ROUTING.table
    report = sbc_health(folder, fx.SINCE, fx.UNTIL, settled_before=settled)
    fx.check_report(report)
    assert report["settled_before"] == settled.isoformat()
    days = {(d["sbc"], d["day"][:10]): d["provisional"] for d in report["days"]}
    assert days == {
        (fx.A, "2024-11-02"): False,
        (fx.A, "2024-11-03"): True,
        (fx.B, "2024-11-02"): False,
    }
    provisional_hours = sorted(h["hour"][:13] for h in report["hours"] if h["provisional"])
    assert provisional_hours == ["2024-11-03T00", "2024-11-03T01"]  # 23:00 on the 2nd ends at 00:00
    assert {s["sbc"]: s["provisional"] for s in report["sbcs"]} == {fx.A: True, fx.B: False}
    page = render_health(report)
    fx.check_page(page)
    assert page.count('<tr data-sbc="sbc-a.contoso.com" class="provisional"') == 1
    assert page.count('class="provisional"') == 1 + 1 + 2  # the SBC, its day, two hours
    assert "~ provisional (amber): holds hours after 2024-11-03 00:30 UTC" in page
    assert page.count("(provisional)</title>") == 2  # the two hours' bars


def test_a_local_copy_of_the_last_days_is_marked_provisional(tmp_path: Path, capsys) -> None:
    """With --tables the watermark is unknown: hours within the last MIN_REREAD (3 days) are
    provisional. The fixture moved to end yesterday: both days and both SBCs are."""
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=1
    )
    shift = yesterday - (fx.UNTIL - timedelta(days=1))

    def moved(text: str) -> str:
        if text.startswith("0001-"):
            return text
        at = datetime.fromisoformat(text) + shift
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    keys = ("startDateTime", "inviteDateTime", "failureDateTime", "endDateTime")
    rows = [{**r, **{k: moved(r[k]) for k in keys}} for r in fx.rows()]
    tables = write_tables(rows, tmp_path / "tables")
    window = ["--since", (fx.SINCE + shift).isoformat(), "--until", (fx.UNTIL + shift).isoformat()]
    assert main(["usage", "health", *window, "--tables", str(tables)]) == 0
    out = capsys.readouterr().out
    sbc_lines = [line.split()[0] for line in out.splitlines() if line.startswith("  sbc-")]
    assert f"{fx.A}~" in sbc_lines and f"{fx.B}~" in sbc_lines
    assert "~ provisional: holds hours after" in out
    day_lines = [line for line in out.split("Per day", 1)[1].splitlines() if "sbc-" in line]
    assert len(day_lines) == 3 and all("~" in line.split()[1] for line in day_lines)


@pytest.mark.parametrize("sbc", [fx.A, fx.B])
def test_the_fixture_keeps_its_own_promises(sbc: str) -> None:
    """The hand-made figures add up (a typo in one would otherwise pass unseen on both sides)."""
    days = [v for (s, _), v in fx.PER_DAY.items() if s == sbc]
    hours = [v for (s, _), v in fx.PER_HOUR.items() if s == sbc]
    total = fx.PER_SBC[sbc]
    for key in ("attempts", "effective", "answered", "short_calls"):
        assert sum(d[key] for d in days) == sum(h[key] for h in hours) == total[key]
    assert total["ner"] == round(100 * total["effective"] / total["attempts"], 2)
    assert total["peak_concurrent"] == max(d["peak_concurrent"] for d in days)
    assert sum(c[3] for c in fx.TOP_CODES[sbc]) == total["attempts"]
