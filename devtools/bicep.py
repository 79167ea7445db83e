"""Bicep read offline, as the infra tests and the cost model read it (no bicep CLI here)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pycep import BicepParser


def pycep_text(source: str) -> str:
    """The Bicep as pycep-parser 0.7.1 reads it: it predates typed dictionaries (`{ *: string }`),
    which compile to `object` anyway."""
    return source.replace("{ *: string }", "object")


@functools.cache
def parse_bicep(path: Path) -> dict[str, Any]:
    """One Bicep file as pycep's JSON tree (parameters, variables, resources, modules, ...)."""
    return dict(BicepParser().parse(text=pycep_text(path.read_text())))
