"""JSON as parsed by orjson, typed: objects have string keys, everything else is ``Any``."""

from __future__ import annotations

from typing import Any, cast

JsonObject = dict[str, Any]


def as_object(value: object) -> JsonObject | None:
    """``value`` as a JSON object, or None if it is not one (a list, a string, ...)."""
    return cast(JsonObject, value) if isinstance(value, dict) else None


def as_list(value: object) -> list[Any] | None:
    """``value`` as a JSON array, or None if it is not one."""
    return cast(list[Any], value) if isinstance(value, list) else None
