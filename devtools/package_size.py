"""How big the deployment package is: the app's files that .funcignore leaves, zipped, and the
packages requirements.txt installs for the Functions runtime (Linux x86-64, CPython 3.11).

    python -m devtools.package_size [--root DIR] [--json]

The app files are the tracked files of the checkout at ``--root`` minus what its .funcignore
excludes (git's own ignore matching, the syntax .funcignore shares with .gitignore). The
requirements are installed with pip into a temporary folder for the platform Azure runs
(manylinux wheels, as a remote build or ``func pack --build-native-deps`` would pick), then
zipped the way a package with ``.python_packages/lib/site-packages`` is. Figures in
docs/deployment-package.md.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = ".python_packages/lib/site-packages"
PLATFORM = ("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64")


def app_files(root: Path) -> list[str]:
    """Tracked files that .funcignore does not exclude, sorted."""

    def listed(*extra: str) -> set[str]:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-c", *extra],
            capture_output=True,
            text=True,
            check=True,
        )
        return set(out.stdout.splitlines())

    ignored = listed("-i", "--exclude-from=.funcignore")
    return sorted(name for name in listed() - ignored if (root / name).is_file())


def install_requirements(root: Path, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(target),
            "--only-binary=:all:",
            *PLATFORM,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "-r",
            str(root / "requirements.txt"),
        ],
        check=True,
    )


def zipped(files: list[tuple[Path, str]]) -> int:
    """Bytes of a deflated zip of (path on disk, name in the zip)."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in files:
            z.write(path, name)
    return len(sink.getvalue())


def measure(root: Path) -> dict[str, object]:
    names = app_files(root)
    app = [(root / n, n) for n in names]
    with tempfile.TemporaryDirectory(prefix="package-size-") as tmp:
        target = Path(tmp)
        install_requirements(root, target)
        deps = [
            (p, f"{SITE_PACKAGES}/{p.relative_to(target).as_posix()}")
            for p in sorted(target.rglob("*"))
            if p.is_file()
        ]
        per_package: dict[str, int] = {}
        for path, _ in deps:
            top = path.relative_to(target).parts[0]
            per_package[top] = per_package.get(top, 0) + path.stat().st_size
        largest = sorted(per_package.items(), key=lambda kv: -kv[1])[:8]
        return {
            "root": str(root),
            "app_files": len(names),
            "app_bytes": sum(p.stat().st_size for p, _ in app),
            "app_zip_bytes": zipped(app),
            "requirements_bytes": sum(p.stat().st_size for p, _ in deps),
            "package_zip_bytes": zipped(app + deps),
            "largest_installed": dict(largest),
        }


def mib(n: object) -> str:
    return f"{int(str(n)) / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The deployment package size: app files and installed requirements."
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="a checkout (default: this one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = measure(args.root.resolve())
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"app files (after .funcignore): {result['app_files']}")
    print(f"app zip:                       {int(str(result['app_zip_bytes'])) / 1024:.0f} KiB")
    print(f"installed requirements:        {mib(result['requirements_bytes'])}")
    print(f"package zip (app + packages):  {mib(result['package_zip_bytes'])}")
    largest = result["largest_installed"]
    assert isinstance(largest, dict)
    for name, size in largest.items():
        print(f"  {name:<28} {mib(size)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
