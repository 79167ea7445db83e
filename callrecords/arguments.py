"""Command-line options more than one command takes: a time range, and where output goes."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from shared.reconcile import since_from_text


def when(text: str) -> datetime:
    """``7d``, ``36h``, ``90m`` (that long ago) or an ISO date / date-time, for argparse."""
    try:
        return since_from_text(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_range(p: argparse.ArgumentParser, since_default: str | None = None) -> None:
    """``--since`` (required, unless a default is given) and ``--until`` (default: now)."""
    if since_default is None:
        p.add_argument(
            "--since", type=when, required=True, help="7d, 36h, 90m (ago) or an ISO date"
        )
    else:
        p.add_argument(
            "--since",
            type=when,
            default=since_default,
            help=f"{since_default} (default), 36h, or an ISO date",
        )
    p.add_argument("--until", type=when, default=None, help="same forms; default: now")


def add_outputs(p: argparse.ArgumentParser) -> None:
    """``--json``, ``--html FILE`` and ``--tables DIR`` of the reports."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained page")
    p.add_argument(
        "--tables", type=Path, metavar="DIR", help="a local copy of the tables (no storage)"
    )
