"""Direct Routing health as one self-contained HTML page: inline CSS and SVG, no scripts, no
external assets; every text from the data is escaped. Each figure sits in a cell named by
``data-k`` (its key in the JSON report), each row by its SBC and hour or day, so a reader or a
test finds a figure without parsing layout."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from typing import Any

from callrecords.usage.sbc_health import LOW_VOLUME_ATTEMPTS, SHORT_CALL_SECONDS

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:24px;
color:#1f2328;background:#fff;max-width:1250px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:14px;margin:18px 0 4px}
.sub{color:#59636e;font-size:13px;margin-bottom:18px}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e9ee;text-align:right;white-space:nowrap}
td[data-k=sbc],td[data-k=phrase]{text-align:left}
th:first-child,td:first-child{text-align:left}
th{background:#f6f8fa;white-space:normal;vertical-align:bottom}
td.low{color:#9a6700;font-style:italic}
td.bad{color:#c62828}
tr.provisional td{background:#fff8e1}
.note{color:#59636e;font-size:12px;margin-top:10px}
svg text{font-family:inherit}
"""

_SUMMARY = [
    ("attempts", "attempts"),
    ("effective", "network-effective"),
    ("ner", "NER %"),
    ("low_volume", "attempts flag"),
    ("answered", "answered"),
    ("avg_duration_s", "avg duration (s)"),
    ("short_calls", f"under {SHORT_CALL_SECONDS} s"),
    ("short_calls_pct", f"under {SHORT_CALL_SECONDS} s %"),
    ("media_bypass_pct", "media bypass %"),
    ("peak_concurrent", "peak concurrent"),
]


def _text(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or key in ("ner", "avg_duration_s") or key.endswith("_pct"):
        return f"{float(value):.2f}"
    return str(value)


def _cell(key: str, row: dict[str, Any]) -> str:
    value = row.get(key)
    css = ""
    if key == "ner" and row.get("low_volume"):
        css = (
            f' class="low" title="fewer than {LOW_VOLUME_ATTEMPTS} attempts: the NER may be low '
            'and still normal"'
        )
    elif key == "low_volume":
        value = f"below {LOW_VOLUME_ATTEMPTS}" if value else ""
    elif key == "peak_at" and value is not None:
        value = str(value)[:19].replace("T", " ")  # UTC, to the second
    return f'<td data-k="{escape(key)}"{css}>{escape(_text(key, value))}</td>'


def _table(
    rows: Sequence[dict[str, Any]], first: tuple[str, str], columns: list[tuple[str, str]]
) -> str:
    """A table whose rows carry data-sbc and data-<first key>, and cells data-k."""
    key, title = first
    head = "".join(f"<th>{escape(t)}</th>" for _, t in [(key, title), *columns])
    body: list[str] = []
    for row in rows:
        label = _label(key, row.get(key))
        attrs = f'data-sbc="{escape(str(row.get("sbc", "")))}"'
        if key != "sbc":
            attrs += f' data-{key}="{escape(str(row.get(key)))}"'
        if row.get("provisional"):
            attrs += ' class="provisional" title="rows for it may still appear"'
            label += " ~"
        cells = "".join(_cell(k, row) for k, _ in columns)
        body.append(f"<tr {attrs}><td>{escape(label)}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _label(key: str, value: Any) -> str:
    text = str(value)
    if key == "hour":
        return text[:16].replace("T", " ")  # 2026-11-02 09:00 (UTC)
    if key == "day":
        return text[:10]
    return text


def _hourly_chart(sbc: str, hours: list[dict[str, Any]], since: str, until: str) -> str:
    """NER per hour as bars on the range's time axis (an hour without attempts is a gap);
    hours with fewer than LOW_VOLUME_ATTEMPTS attempts drawn pale, provisional hours in amber."""
    if not hours:
        return ""
    start = datetime.fromisoformat(since).replace(minute=0, second=0, microsecond=0)
    slots = max(1, math.ceil((datetime.fromisoformat(until) - start) / timedelta(hours=1)))
    width, height, left, bottom, top = 960, 170, 40, 40, 10
    plot_w, plot_h = width - left - 10, height - top - bottom
    slot = plot_w / slots
    bar = max(0.6, min(24.0, slot * 0.7))
    parts = [
        f'<svg role="img" aria-label="NER per hour, {escape(sbc)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for pct in (0, 50, 100):
        y = top + plot_h * (1 - pct / 100)
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e9ee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{pct}</text>'
        )
    for hour in hours:
        index = (datetime.fromisoformat(hour["hour"]) - start) / timedelta(hours=1)
        ner = float(hour["ner"] or 0.0)
        h = plot_h * ner / 100
        x = left + slot * index + (slot - bar) / 2
        fill = "#b6c7e3" if hour["low_volume"] else "#2f6fba"
        label = f"{_label('hour', hour['hour'])}: NER {ner:.2f}% of {hour['attempts']}"
        if hour.get("provisional"):
            fill = "#f2cc60" if hour["low_volume"] else "#d4a72c"
            label += " (provisional)"
        parts.append(
            f'<rect x="{x:.2f}" y="{top + plot_h - h:.1f}" width="{bar:.2f}" height="{h:.1f}" '
            f'fill="{fill}"><title>{escape(label)}</title></rect>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 12}" font-size="11">{escape(_label("hour", since))}</text>'
        f'<text x="{width - 10}" y="{height - 12}" font-size="11" text-anchor="end">'
        f"{escape(_label('hour', until))}</text></svg>"
    )
    return "".join(parts)


def render_health(report: dict[str, Any]) -> str:
    sbcs: list[dict[str, Any]] = report["sbcs"]
    codes = ", ".join(str(c) for c in report["network_effective_sip_codes"])
    period = (
        f"{report['since'][:16].replace('T', ' ')} .. {report['until'][:16].replace('T', ' ')} UTC"
    )
    out = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<title>Direct Routing health</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Direct Routing health</h1>",
        f'<div class="sub">Calls that started {escape(period)}, per SBC '
        "(trunkFullyQualifiedDomainName).</div>",
    ]
    if not sbcs:
        out.append("<p>No Direct Routing calls in the range.</p></body></html>")
        return "".join(out)
    out += [
        "<h2>Per SBC</h2>",
        _table(sbcs, ("sbc", "SBC"), [*_SUMMARY, ("peak_at", "peak first at (UTC)")]),
        '<p class="note">NER (Network Effectiveness Ratio) = network-effective attempts / '
        f"attempts x 100, where an attempt is network-effective if it was answered or ended in "
        f"SIP {escape(codes)} (busy, no answer, cancelled while ringing, declined). Below "
        f"{report['low_volume_below']} attempts the NER is shown in italics: it may be low and "
        f"still normal. Average duration and the share under {report['short_call_seconds']} s "
        "are of answered calls. Peak concurrent: calls overlapping between their start and end.</p>",
    ]
    if any(s.get("provisional") for s in sbcs):
        settled = report["settled_before"][:16].replace("T", " ")
        out.append(
            '<p class="note provisional">~ provisional (amber): holds hours after '
            f"{escape(settled)} UTC, for which Graph may still publish rows; it publishes them "
            "up to 48 hours late, so a low NER there may be rows not yet seen.</p>"
        )
    for sbc in sbcs:
        name = str(sbc["sbc"])
        out.append(f"<h3>Top final SIP codes: {escape(name)}</h3>")
        rows = [{**c, "sbc": name} for c in sbc["top_sip_codes"]]
        out.append(
            _table(
                rows,
                ("sip_code", "SIP code"),
                [
                    ("sub_reason", "Microsoft sub-reason"),
                    ("phrase", "phrase"),
                    ("calls", "calls"),
                    ("pct", "% of attempts"),
                    ("network_effective", "network-effective"),
                ],
            )
        )
    out.append("<h2>NER per hour</h2>")
    for sbc in sbcs:
        hours = [h for h in report["hours"] if h["sbc"] == sbc["sbc"]]
        chart = _hourly_chart(str(sbc["sbc"]), hours, report["since"], report["until"])
        out.append(f"<h3>{escape(str(sbc['sbc']))}</h3>{chart}")
    per = [("sbc", "SBC"), *(c for c in _SUMMARY if c[0] != "low_volume")]
    out += [
        "<h2>Per day (UTC)</h2>",
        _table(report["days"], ("day", "day"), per),
        "<h2>Per hour (UTC)</h2>",
        _table(report["hours"], ("hour", "hour"), per),
        "</body></html>",
    ]
    return "".join(out)
