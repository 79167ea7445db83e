"""The operator's command without any service: help for every command (through the cli.py
shim), settings merging, the progress bar."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import cli
from callrecords.cli import ProgressBar
from shared.clock import utcnow
from shared.messages import Source
from shared.reconcile import Report
from shared.settings import SettingError, local_settings_env

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("status", "subscription", "backfill", "enqueue", "fetch", "replay-poison")


@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_for_every_command(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"] if command else ["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cli.py") and (command in out)


def test_help_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and all(c in result.stdout for c in COMMANDS)


def test_help_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callrecords", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m callrecords")
    assert all(c in result.stdout for c in COMMANDS)


def test_without_the_cli_extra_the_command_says_so_in_one_line() -> None:
    """`pip install .` without `[cli]`: no DuckDB (simulated by blocking its import)."""
    code = "import sys; sys.modules['duckdb'] = None; sys.argv = ['cli.py', 'status']; import cli"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: DuckDB is not installed")
    assert '".[cli]"' in lines[0]


def test_settings_environment_first_then_local_settings_json(tmp_path) -> None:
    values = {"A": "file", "B": "file", "C": "file", "D": None, "E": 5}
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values}))
    merged = local_settings_env(tmp_path, {"A": "env", "B": "", "X": "env"})
    assert merged == {"A": "env", "B": "file", "C": "file", "E": "5", "X": "env"}
    assert local_settings_env(tmp_path / "absent", {"A": "env"}) == {"A": "env"}
    (tmp_path / "local.settings.json").write_text("{not json")
    with pytest.raises(SettingError, match=r"local\.settings\.json is malformed"):
        local_settings_env(tmp_path, {})


def test_progress_bar_draws_on_a_terminal_and_prints_lines_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = utcnow()
    report = Report(now - timedelta(days=2), now, now - timedelta(days=45), source=Source.BACKFILL)
    tty, pipe = Terminal(), io.StringIO()
    bars = [ProgressBar(tty, "backfill"), ProgressBar(pipe, "backfill")]
    for bar in bars:
        bar.update(report)  # the start: window and clamp note
    report.listed, report.missing, report.pages = 7, 7, 1
    report.done_until = now - timedelta(days=1)
    for bar in bars:
        bar.update(report)
        bar.close()
    assert "note: Graph keeps call records for 30 days" in tty.getvalue()
    assert "\r" in tty.getvalue() and "[###############...............]  50%" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
    assert "\r" not in pipe.getvalue()
    assert "done (50%): listed 7, archived 0, queued 7" in pipe.getvalue()
