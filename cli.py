#!/usr/bin/env python3
"""``python cli.py …`` in a checkout: the same commands as the installed ``callrecords``
(callrecords/cli.py has them all; docs/operations.md describes them)."""

from __future__ import annotations

import sys

from callrecords.cli import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, prog="cli.py")


if __name__ == "__main__":
    sys.exit(main())
