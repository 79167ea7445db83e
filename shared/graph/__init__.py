"""Microsoft Graph, in one package: every paged read and every retry decision of the app.

- ``client.py``: ``GraphClient``, authenticated requests over one httpx client per process,
  pinned to one Graph root, paced by the app-wide adaptive rate; a call record's URLs and
  per-record limits.
- ``paging.py``: ``pages``, the one pager (next links in every documented form, the host
  pinned, pacing, Retry-After, continuation tokens).
- ``retry.py``: ``RetryPolicy`` and its instances, one per use; ``classify_fault``.
- ``errors.py``: the exceptions, and the one map from HTTP status to exception.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.graph.client import GraphClient, RecordHead, RecordLimits, parse_fields
    from shared.graph.errors import (
        BadPage,
        GraphError,
        NotFound,
        Throttled,
        Unauthorized,
        Unreachable,
    )
    from shared.graph.paging import (
        OutOfTime,
        Page,
        first_page,
        paced_until,
        pages,
        parse_page,
        resolve_link,
    )
    from shared.graph.retry import Fault, RetryLater, RetryPolicy, classify_fault

# Loaded on first use (PEP 562), so ``shared.graph.retry`` can be imported for the queue
# clients' policy without the client and httpx: the notifications webhook answers Graph's
# first request on a cold instance within 3 s only if it imports little.
_HOME = {
    "GraphClient": "client",
    "RecordHead": "client",
    "RecordLimits": "client",
    "parse_fields": "client",
    "BadPage": "errors",
    "GraphError": "errors",
    "NotFound": "errors",
    "Throttled": "errors",
    "Unauthorized": "errors",
    "Unreachable": "errors",
    "OutOfTime": "paging",
    "Page": "paging",
    "paced_until": "paging",
    "first_page": "paging",
    "pages": "paging",
    "parse_page": "paging",
    "resolve_link": "paging",
    "Fault": "retry",
    "RetryLater": "retry",
    "RetryPolicy": "retry",
    "classify_fault": "retry",
}


def __getattr__(name: str) -> object:
    import importlib

    if name not in _HOME:
        raise AttributeError(f"module 'shared.graph' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shared.graph.{_HOME[name]}"), name)


__all__ = [
    "BadPage",
    "Fault",
    "GraphClient",
    "GraphError",
    "NotFound",
    "OutOfTime",
    "Page",
    "RecordHead",
    "RecordLimits",
    "RetryLater",
    "RetryPolicy",
    "Throttled",
    "Unauthorized",
    "Unreachable",
    "classify_fault",
    "first_page",
    "paced_until",
    "pages",
    "parse_fields",
    "parse_page",
    "resolve_link",
]
