"""Graph's answers as exceptions: one map from HTTP status to exception class.

Graph's error body is ``{"error": {"code", "message"}}``
(learn.microsoft.com/graph/errors). Which statuses mean "later" follows the same page and
learn.microsoft.com/graph/throttling ("429 Too Many Requests", and 503/504 returned with a
Retry-After when the service is busy): those are ``Throttled``; 404 is ``NotFound`` (for a
call record: not published yet, up to 150 minutes after the call, or older than 30 days,
learn.microsoft.com/graph/api/callrecords-callrecord-get); 401/403 are ``Unauthorized``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # annotations only: the webhooks import these errors' module, not httpx
    import httpx

# Statuses that say "the same request may succeed later" (learn.microsoft.com/graph/errors:
# 408 Request Timeout, 429, and the 5xx family), beside the ones Graph sends with Retry-After.
TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient_status(status: int | None) -> bool:
    """No answer (None), a 5xx, 408 or 429."""
    return status is None or status >= 500 or status in TRANSIENT_STATUSES


class GraphError(Exception):
    """Graph answered with an error, or could not be reached."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"Graph {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class NotFound(GraphError):
    """404: for a call record, 'not published yet' (up to 150 min) or 'older than 30 days'."""


class Throttled(GraphError):
    """429, 503 or 504: come back after ``retry_after`` seconds (None: back off yourself)."""


class Unauthorized(GraphError):
    """401 or 403: the identity lacks a token or the CallRecords.Read.All app role."""


class Unreachable(GraphError):
    """The network failed: connection refused or dropped, timeout, truncated body."""


class BadPage(GraphError):
    """Graph answered 200 with something that is not the JSON asked for (e.g. the XML of
    ``/v1.0/$metadata``): a bug or a changed API, never retried as a network fault."""


# The one map from an HTTP status to the exception raised for it (any other 4xx/5xx:
# GraphError itself).
STATUS_ERRORS: dict[int, type[GraphError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    429: Throttled,
    503: Throttled,
    504: Throttled,
}


def error_class(status: int) -> type[GraphError]:
    return STATUS_ERRORS.get(status, GraphError)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (Graph sends delta-seconds), None if absent or not
    a number."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from(response: httpx.Response) -> GraphError:
    """The exception for an error response: its class from STATUS_ERRORS, code and message
    from Graph's error body."""
    code, message = "unknown", response.reason_phrase
    try:
        err = orjson.loads(response.content).get("error", {})
        code, message = str(err.get("code", code)), str(err.get("message", message))[:300]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    status = response.status_code
    return error_class(status)(status, code, message, retry_after(response))
