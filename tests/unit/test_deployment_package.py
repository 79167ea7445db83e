"""What the deployed package imports: every module .funcignore leaves, read (not run), imports
only the standard library, the app's own modules and the distributions requirements.txt
installs (with their dependencies); never the operator's package or DuckDB."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from devtools.package_size import app_files

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"shared", "function_app"}
NEVER = {"callrecords", "cli", "devtools", "bench", "tests", "duckdb"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def installed_by_requirements() -> set[str]:
    """requirements.txt's distributions and, transitively, what they require (no extras)."""
    wanted = [
        Requirement(line.split("#")[0].strip().rstrip("\\").strip())
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip() and not line.strip().startswith("-")
    ]
    found: set[str] = set()
    while wanted:
        req = wanted.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name in found:
            continue
        found.add(name)
        wanted += [Requirement(r) for r in metadata.distribution(name).requires or []]
    return found


def imported_top_names(path: Path) -> set[str]:
    """The top-level names of every absolute import in a file, lazy ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_deployed_modules_import_only_what_requirements_txt_installs() -> None:
    deployed = [ROOT / n for n in app_files(ROOT) if n.endswith(".py")]
    assert ROOT / "function_app.py" in deployed and ROOT / "shared" / "handlers.py" in deployed
    assert not [p for p in deployed if p.parts[len(ROOT.parts)] in NEVER]
    allowed = installed_by_requirements()
    assert "duckdb" not in allowed and "pyarrow" in allowed
    providers = metadata.packages_distributions()
    problems: list[str] = []
    for path in deployed:
        for top in imported_top_names(path) - FIRST_PARTY - set(sys.stdlib_module_names):
            dists = {_name(d) for d in providers.get(top, [])}
            if top in NEVER or not dists & allowed:
                problems.append(f"{path.relative_to(ROOT)} imports {top} ({sorted(dists)})")
    assert problems == []
