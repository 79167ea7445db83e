"""Call record ids are GUIDs; checking that before an id reaches a URL or a blob name
keeps path tricks (``../``, ``%2F``, query strings) out of both."""

from __future__ import annotations

import re

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(value: object) -> bool:
    """True only for a plain 36-character GUID string (no braces, no whitespace)."""
    return isinstance(value, str) and len(value) == 36 and _GUID.fullmatch(value) is not None


def normalize_id(value: object) -> str:
    """The canonical (lowercase) form of a GUID id; ValueError for anything else."""
    if not is_guid(value):
        raise ValueError(f"not a GUID call record id: {str(value)[:80]!r}")
    return str(value).lower()
