"""Rows of the results table, their Markdown rendering, and the JSON results file."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
PROCESS_ORDER = ("host", "webhook", "worker", "bench", "graphsim", "azurite")


@dataclass
class Row:
    """One measurement beside its floor and/or target.

    ``ratio`` is value / floor (or value / target figure when there is no floor); ``met`` is
    None when the row is informational (no target in the issue)."""

    part: str
    measurement: str
    value: float | None
    unit: str = ""
    floor: float | None = None
    floor_label: str = ""
    target: str = ""
    ratio: float | None = None
    met: bool | None = None
    note: str = ""


@dataclass
class PartResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # further Markdown tables (cost model)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100): the smallest value with q% of them at or below."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if not unit and float(value).is_integer():
        return f"{int(value):,}"
    if unit == "%":
        text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "/s", "x") else f"{text} {unit}"


def _floor_cell(row: Row) -> str:
    parts = []
    if row.floor is not None:
        parts.append(f"{row.floor_label or 'floor'} {fmt(row.floor, row.unit)}")
    elif row.floor_label:
        parts.append(row.floor_label)
    if row.target:
        parts.append(f"target {row.target}")
    return "; ".join(parts) or "—"


def markdown(rows: list[Row]) -> str:
    lines = [
        "| measurement | value | floor/target | ratio | met? |",
        "|---|---:|---|---:|:---:|",
    ]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**NO**")
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        name = r.measurement + (f" ({r.note})" if r.note else "")
        lines.append(f"| {name} | {fmt(r.value, r.unit)} | {_floor_cell(r)} | {ratio} | {met} |")
    return "\n".join(lines)


def where_time_went(parts: list[PartResult]) -> str:
    """A second table: wall time and CPU seconds of every process, per scenario."""
    scenarios = []
    for part in parts:
        for name, cpu in part.details.get("cpu", {}).items():
            scenarios.append((f"{part.name}: {name}", cpu))
    if not scenarios:
        return ""
    procs = sorted(
        {k[4:-2] for _, cpu in scenarios for k in cpu if k.startswith("cpu_")},
        key=lambda p: PROCESS_ORDER.index(p) if p in PROCESS_ORDER else len(PROCESS_ORDER),
    )
    head = "| scenario | wall s | " + " | ".join(f"CPU s {p}" for p in procs) + " | busy |"
    lines = [head, "|---|---:|" + "---:|" * len(procs) + "---:|"]
    for name, cpu in scenarios:
        cells = " | ".join(fmt(cpu.get(f"cpu_{p}_s")) for p in procs)
        busy = cpu.get("machine_busy")
        lines.append(
            f"| {name} | {fmt(cpu.get('wall_s'))} | {cells} | "
            f"{'—' if busy is None else f'{busy:.0%}'} |"
        )
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True, timeout=10
        )
        return out.stdout.rstrip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def meta(argv: list[str]) -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": _git("rev-parse", "HEAD").strip(),
        "dirty_files": [line[3:] for line in _git("status", "--porcelain").splitlines()],
    }


def write_json(info: dict[str, Any], parts: list[PartResult], stamp: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    body = {
        "meta": info,
        "rows": [asdict(r) for p in parts for r in p.rows],
        "parts": {
            p.name: {
                "seconds": round(p.seconds, 1),
                "error": p.error,
                "warnings": p.warnings,
                "details": p.details,
                "text": p.text,
            }
            for p in parts
        },
    }
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2, default=str))
    return path
