"""What ``pip install .`` gives: the package built from pyproject.toml and installed (without
its dependencies, which .venv already has) into a temporary folder, then its ``callrecords``
command run from there, away from the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_SUBCOMMAND = re.compile(r"^    ([a-z][a-z-]*)(?:\s{2,}|$)")


def _pins(lines: list[str]) -> dict[str, str]:
    """name (normalised) -> version for every ``name==version`` requirement line."""
    found: dict[str, str] = {}
    for line in lines:
        match = _PIN.match(line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def _subcommands(help_text: str) -> list[str]:
    """The subcommand names an argparse --help lists (one per indented line)."""
    return [m[1] for line in help_text.splitlines() if (m := _SUBCOMMAND.match(line))]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target`` of a copy of what the package is built from (a
    build writes build/ and *.egg-info next to its sources: not in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("shared", "callrecords"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-deps", "--no-compile", "--target", str(target), str(src)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_callrecords_entry_point_and_its_extra(installed: Path) -> None:
    (dist,) = [
        d
        for d in metadata.distributions(path=[str(installed)])
        if d.metadata["Name"] == "callrecord-archiver"
    ]
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"callrecords": "callrecords.cli:main"}
    requires = dist.requires or []
    plain = [r for r in requires if "extra ==" not in r]
    extra = [r.split(";")[0].strip() for r in requires if 'extra == "cli"' in r]
    # DuckDB comes with the command only; the runtime's pins are requirements.txt's.
    assert not [r for r in plain if r.lower().startswith("duckdb")]
    assert [r for r in extra if r.startswith("duckdb==")]
    runtime = (ROOT / "requirements.txt").read_text().splitlines()
    assert "duckdb" not in _pins(runtime)
    assert _pins(plain).items() <= _pins(runtime).items()
    dev = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert _pins(extra).items() <= _pins(dev).items()  # the tests run what the extra installs
    # Only the app's and the operator's packages: no tests, devtools, bench.
    tops = {p.name for p in installed.iterdir()} - {"bin"}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"shared", "callrecords"}


def test_installed_command_has_the_same_subcommands_as_cli_py(
    installed: Path, tmp_path: Path
) -> None:
    script = installed / "bin" / "callrecords"
    assert script.is_file()
    ours = _run(installed, tmp_path, str(script), "--help")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.startswith("usage: callrecords")
    shim = subprocess.run(
        [sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert shim.stdout.startswith("usage: cli.py")
    commands = _subcommands(ours.stdout)
    assert commands == _subcommands(shim.stdout)
    assert {"status", "backfill", "quality", "usage"} <= set(commands)
    usage = _run(installed, tmp_path, str(script), "usage", "--help")
    assert usage.returncode == 0
    assert set(_subcommands(usage.stdout)) == {"backfill", "report", "health"}


def test_installed_command_runs_from_its_install_and_reads_settings_from_cwd(
    installed: Path, tmp_path: Path
) -> None:
    code = "import callrecords.cli as c, shared; print(c.__file__); print(shared.__file__); print(c.ROOT)"
    out = _run(installed, tmp_path, sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr
    cli_file, shared_file, home = out.stdout.splitlines()
    assert Path(cli_file).is_relative_to(installed) and Path(shared_file).is_relative_to(installed)
    assert Path(home) == tmp_path  # local.settings.json and .local/ are looked for here
