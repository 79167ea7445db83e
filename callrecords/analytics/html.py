"""The quality report as one self-contained HTML page: inline CSS and SVG, no scripts, no
external assets, so it can be mailed, archived or opened offline. Every text from the data is
escaped."""

from __future__ import annotations

from datetime import UTC
from html import escape
from typing import Any

from callrecords.analytics.report import Dimension, Group, QualityReport
from shared.analytics.rules import AUDIO_POOR_RATE_TARGET, QER_PAGE

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:24px;
color:#1f2328;background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#59636e;font-size:13px;margin-bottom:18px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:10px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:600}.card .l{color:#59636e;font-size:12px}
.bad{color:#c62828}.ok{color:#2e7d32}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e9ee;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f6f8fa}
svg text{font-family:inherit}
.note{color:#59636e;font-size:12px;margin-top:18px}
td.met{color:#2e7d32}td.missed{color:#c62828;font-weight:600}
"""


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _daily_chart(daily: list[Group], audio: list[Group]) -> str:
    """Poor rate per day: bars for all classified streams, a line for audio, the target."""
    if not daily:
        return "<p>No classified streams in the window.</p>"
    width, height = 960, 290
    left, right, top, bottom = 56, 16, 16, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    rates = [g.poor_rate or 0.0 for g in daily] + [g.poor_rate or 0.0 for g in audio]
    peak = max([*rates, AUDIO_POOR_RATE_TARGET * 1.5])
    # a round top for the axis: the next 1, 2 or 5 step above the peak
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0) if s * 5 >= peak)
    ymax = step * 5

    def y(rate: float) -> float:
        return top + plot_h * (1 - min(rate, ymax) / ymax)

    slot = plot_w / len(daily)
    bar = max(2.0, min(40.0, slot * 0.6))
    parts = [
        f'<svg role="img" aria-label="Daily poor stream rate" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for n in range(6):
        rate = step * n
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" '
            'stroke="#e5e9ee"/>'
            f'<text x="{left - 8}" y="{y(rate) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#59636e">{rate * 100:.0f}%</text>'
        )
    label_every = max(1, len(daily) // 12)
    for i, g in enumerate(daily):
        cx = left + slot * (i + 0.5)
        rate = g.poor_rate or 0.0
        parts.append(
            f'<rect x="{cx - bar / 2:.1f}" y="{y(rate):.1f}" width="{bar:.1f}" '
            f'height="{top + plot_h - y(rate):.1f}" fill="#90caf9">'
            f"<title>{escape(g.key)}: {_pct(g.poor_rate)} poor "
            f"({g.poor} of {g.streams} classified streams)</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{height - bottom + 15}" font-size="11" '
                f'text-anchor="middle" fill="#59636e">{escape(g.key[5:])}</text>'
                f'<text x="{cx:.1f}" y="{height - bottom + 28}" font-size="10" '
                f'text-anchor="middle" fill="#8c959f">n={g.streams:,}</text>'
            )
    by_day = {g.key: g for g in audio}
    points = [
        (left + slot * (i + 0.5), y(by_day[g.key].poor_rate or 0.0))
        for i, g in enumerate(daily)
        if g.key in by_day
    ]
    if points:
        path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#6a1b9a" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3" fill="#6a1b9a"/>' for x, yy in points
        )
    ty = y(AUDIO_POOR_RATE_TARGET)
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#c62828" '
        'stroke-dasharray="6 4" stroke-width="1.5"/>'
        f'<text x="{width - right - 4}" y="{ty - 5:.1f}" font-size="11" text-anchor="end" '
        f'fill="#c62828">audio target {AUDIO_POOR_RATE_TARGET * 100:.0f}%</text>'
    )
    legend_y = height - 10
    parts.append(
        f'<rect x="{left}" y="{legend_y - 9}" width="12" height="10" fill="#90caf9"/>'
        f'<text x="{left + 17}" y="{legend_y}" font-size="12">all classified streams</text>'
        f'<line x1="{left + 170}" x2="{left + 190}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
        'stroke="#6a1b9a" stroke-width="2"/>'
        f'<text x="{left + 196}" y="{legend_y}" font-size="12">audio</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _name(g: Group) -> str:
    return f"{g.label} ({g.key})" if g.label else g.key


def _top_bars(groups: list[Group]) -> str:
    """The worst keys: one bar per key, length = poor streams, with the rate beside it."""
    if not groups:
        return "<p>No classified streams to rank.</p>"
    label_w, bar_w, row_h = 300, 460, 26
    width, height = label_w + bar_w + 150, row_h * len(groups) + 10
    most = max(g.poor for g in groups) or 1
    repeated = {g.label for g in groups if g.label and sum(h.label == g.label for h in groups) > 1}
    parts = [
        f'<svg role="img" aria-label="Worst keys by poor streams" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, g in enumerate(groups):
        yy = 5 + i * row_h
        name = _name(g)
        shown = g.label or g.key  # the table below gives the ids; namesakes get a few here
        if g.label in repeated:
            shown = f"{g.label} ({g.key[:8]})"
        short = shown if len(shown) <= 40 else shown[:39] + "…"
        length = bar_w * g.poor / most
        colour = "#c62828" if (g.poor_rate or 0) > AUDIO_POOR_RATE_TARGET else "#ef9a9a"
        parts.append(
            f'<text x="{label_w - 8}" y="{yy + 16}" font-size="12" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(short)}</text>"
            f'<rect x="{label_w}" y="{yy + 4}" width="{max(length, 1):.1f}" height="16" '
            f'fill="{colour}"/>'
            f'<text x="{label_w + max(length, 1) + 6:.1f}" y="{yy + 16}" font-size="12" '
            f'fill="#1f2328">{g.poor} poor / {g.streams} ({_pct(g.poor_rate)})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _verdict_cell(verdicts: dict[str, Any], measure: str, rate: float | None) -> str:
    """A rate with its target, marked met or missed (class and text, for screen readers)."""
    met = verdicts[f"{measure}_met"]
    target = f"target ≤ {verdicts[f'{measure}_target'] * 100:.1f}%"
    if met is None:
        return f'<td data-measure="{measure}" title="{target}">-</td>'
    word = "met" if met else "missed"
    return (
        f'<td class="{word}" data-measure="{measure}" title="{target}">{_pct(rate)} ({word})</td>'
    )


def _reliability(report: QualityReport) -> str:
    r, v = report.reliability, report.verdicts()
    audio = report.audio
    return (
        '<table class="reliability"><thead><tr><th>measure</th><th>count</th><th>of</th>'
        "<th>rate (QER target, overall)</th></tr></thead><tbody>"
        f"<tr><td>audio poor streams</td><td>{audio.poor if audio else 0:,}</td>"
        f"<td>{audio.classified if audio else 0:,} classified</td>"
        f"{_verdict_cell(v, 'poor_rate', audio.poor_rate if audio else None)}</tr>"
        f"<tr><td>setup failures</td><td>{r.setup_failures:,}</td><td>{r.segments:,} segments</td>"
        f"{_verdict_cell(v, 'setup_failure_rate', r.setup_failure_rate)}</tr>"
        f"<tr><td>drops</td><td>{r.drops:,}</td><td>{r.set_up:,} set up</td>"
        f"{_verdict_cell(v, 'drop_failure_rate', r.drop_failure_rate)}</tr>"
        "</tbody></table>"
    )


def _poor_due_to(report: QualityReport) -> str:
    rows = "".join(
        f'<tr data-reason="{escape(name)}"><td>{escape(name)}</td><td>{n:,}</td></tr>'
        for name, n in report.poor_due_to.items()
    )
    return (
        '<table class="due"><thead><tr><th>poor due to</th><th>poor streams</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _rows(report: QualityReport) -> str:
    out: list[str] = []
    for g in report.by:
        v = g.verdicts()
        r = g.reliability
        due = ", ".join(f"{k} {n}" for k, n in g.poor_due_to.items() if n) or "-"
        out.append(
            f'<tr data-key="{escape(g.key)}"><td>{escape(_name(g))}</td>'
            f"<td>{g.streams:,}</td><td>{g.poor:,}</td><td>{_pct(g.poor_rate)}</td>"
            f"<td>{g.audio_poor:,} / {g.audio_streams:,}</td>"
            f"{_verdict_cell(v, 'poor_rate', g.audio_poor_rate)}"
            f"<td>{r.setup_failures:,} / {r.segments:,}</td>"
            f"{_verdict_cell(v, 'setup_failure_rate', r.setup_failure_rate)}"
            f"<td>{r.drops:,} / {r.set_up:,}</td>"
            f"{_verdict_cell(v, 'drop_failure_rate', r.drop_failure_rate)}"
            f"<td>{'inside' if g.inside else 'overall'}</td><td>{escape(due)}</td></tr>"
        )
    return "".join(out)


def _missing(report: QualityReport) -> str:
    if report.missing_subnets is None:
        return ""
    rows = "".join(
        f'<tr data-subnet="{escape(m.subnet)}"><td>{escape(m.subnet)}</td>'
        f"<td>{m.audio_streams:,}</td></tr>"
        for m in report.missing_subnets
    )
    return (
        "<h2>Subnets missing from the building file</h2>"
        '<div class="sub">Subnets with 10 or more audio streams that the building file does not '
        "map (CQD's Missing Subnet Report): add the managed ones.</div>"
        '<table class="missing"><thead><tr><th>subnet</th><th>audio streams</th></tr></thead>'
        f"<tbody>{rows or '<tr><td>none</td><td>0</td></tr>'}</tbody></table>"
    )


def render(report: QualityReport) -> str:
    """The whole page."""
    audio = report.audio
    audio_rate = audio.poor_rate if audio else None
    verdict = (
        ""
        if audio_rate is None
        else (' class="ok"' if audio_rate <= AUDIO_POOR_RATE_TARGET else ' class="bad"')
    )
    window = (
        f"{report.since.astimezone(UTC):%Y-%m-%d %H:%M} to "
        f"{report.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    )
    cards = [
        (f"{report.streams:,}", "streams"),
        (f"{report.classified:,}", "classified"),
        (f"{report.poor:,}", "poor"),
        (_pct(report.poor_rate), "poor rate (classified)"),
    ]
    card_html = "".join(
        f'<div class="card"><div class="v">{escape(v)}</div><div class="l">{escape(lbl)}</div></div>'
        for v, lbl in cards
    )
    card_html += (
        f'<div class="card"><div class="v"{verdict}>{_pct(audio_rate)}</div>'
        f'<div class="l">audio poor rate (target ≤ {AUDIO_POOR_RATE_TARGET * 100:.0f}%)</div></div>'
    )
    kinds = "".join(
        f"<tr><td>{escape(k.kind)}</td><td>{k.streams:,}</td><td>{k.classified:,}</td>"
        f"<td>{k.poor:,}</td><td>{_pct(k.poor_rate)}</td></tr>"
        for k in report.kinds
    )
    rows = _rows(report)
    dim = escape(report.dimension)
    heading = "Every row" if Dimension(report.dimension).categorical else f"Worst {len(report.by)}"
    ranked = "setup failures and drops" if report.by_reliability else "poor streams"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Call quality {escape(window)}</title><style>{_CSS}</style></head>
<body>
<h1>Call quality</h1>
<div class="sub">{escape(window)} · rules: {escape(report.rules)} (Call Quality Dashboard stream
classification) · rates over classified streams</div>
<div class="cards">{card_html}</div>
<h2>Reliability and the QER targets</h2>
<div class="sub">Per segment: setup failure rate = segments that failed to set up / segments;
drop failure rate = segments that dropped / segments that set up. Targets: Microsoft's Quality
of Experience Review guide ({escape(QER_PAGE)}).</div>
{_reliability(report)}
{_poor_due_to(report)}
{_missing(report)}
<h2>Poor stream rate per day</h2>
{_daily_chart(report.daily, report.daily_audio)}
<h2>{heading} by {dim} ({ranked})</h2>
<div class="sub">Bar length: poor streams; dark red: poor rate above
{AUDIO_POOR_RATE_TARGET * 100:.0f}%.</div>
{_top_bars(report.by)}
<table class="by"><thead><tr><th>{dim}</th><th>classified streams</th><th>poor</th>
<th>poor rate</th><th>audio poor</th><th>audio poor rate</th><th>setup failed</th>
<th>setup failure rate</th><th>dropped</th><th>drop failure rate</th><th>targets</th>
<th>poor due to</th></tr></thead><tbody>{rows}</tbody></table>
<h2>By kind of stream</h2>
<table><thead><tr><th>kind</th><th>streams</th><th>classified</th><th>poor</th><th>poor rate</th>
</tr></thead><tbody>{kinds}</tbody></table>
<p class="note">Streams are attributed to their segment's caller. Unclassified streams (no
metric reported) are counted but left out of rates. Microsoft's suggested target for the audio
poor stream rate is {AUDIO_POOR_RATE_TARGET * 100:.0f}% overall (Quality of Experience Review
guide).</p>
</body></html>
"""
