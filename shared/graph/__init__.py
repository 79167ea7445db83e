"""Microsoft Graph, in one package: every paged read and every retry decision of the app.

- ``client.py``: ``GraphClient``, authenticated requests over one httpx client per process,
  pinned to one Graph root, paced by the app-wide adaptive rate; a call record's URLs and
  per-record limits.
- ``paging.py``: ``pages``, the one pager (next links in every documented form, the host
  pinned, pacing, Retry-After, continuation tokens).
- ``retry.py``: ``RetryPolicy`` and its instances, one per use; ``classify_fault``.
- ``errors.py``: the exceptions, and the one map from HTTP status to exception.
"""

from shared.graph.client import GraphClient, RecordHead, RecordLimits, parse_fields
from shared.graph.errors import (
    BadPage,
    GraphError,
    NotFound,
    Throttled,
    Unauthorized,
    Unreachable,
)
from shared.graph.paging import Page, first_page, pages, parse_page, resolve_link
from shared.graph.retry import Fault, RetryLater, RetryPolicy, classify_fault

__all__ = [
    "BadPage",
    "Fault",
    "GraphClient",
    "GraphError",
    "NotFound",
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
    "pages",
    "parse_fields",
    "parse_page",
    "resolve_link",
]
