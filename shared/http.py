"""Small HTTP answers shared by the HTTP functions: JSON bodies, and never a stack trace."""

from __future__ import annotations

from typing import Any

import azure.functions as func
import orjson

SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def json_response(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps(body),
        status_code=status,
        mimetype="application/json",
        headers={**SAFE_HEADERS, **(headers or {})},
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return json_response(status, {"error": message}, headers)


def text_response(status: int, text: str) -> func.HttpResponse:
    """Plain text, explicitly not HTML: the validation token is echoed through this."""
    return func.HttpResponse(
        text, status_code=status, mimetype="text/plain", charset="utf-8", headers=SAFE_HEADERS
    )
