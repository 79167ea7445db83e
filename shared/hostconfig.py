"""What the Functions host will enforce, read from host.json as the host reads it.

``functionTimeout`` bounds every invocation: past it the host gives up on the invocation and,
for a Python worker, restarts the worker process, ending every other invocation running on it
(a queue message being archived, a webhook answering Graph). So no long-running invocation
trusts a budget of its own: each timer and each reconcile slice takes ``run_budget()``, the
timeout less a margin for the work in flight when the budget runs out (one page, one day's
table, a last checkpoint), stops cleanly and continues from what it saved (the timer on its
next run, the slice as a new message).

host.json sets ``functionTimeout`` to 30 minutes on purpose: the Flex Consumption default,
written out so a plan change cannot shorten it unnoticed. Flex enforces no maximum, but gives a
running execution only 60 minutes of grace when an instance is scaled in and 10 minutes during
platform updates (learn.microsoft.com/azure/azure-functions/functions-scale, "Function app
timeout duration"); every long job here is cut in checkpointed pieces, so 30 minutes is ample
and an unbounded timeout would only hide a stuck run.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

import orjson

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
# Flex Consumption's default when host.json sets none; what "-1" (no timeout) is worth there:
# the grace a running execution gets when its instance is scaled in.
DEFAULT_TIMEOUT = timedelta(minutes=30)
UNBOUNDED_GRACE = timedelta(minutes=60)
MARGIN_SHARE = 0.2  # of the timeout, kept for the work in flight when the budget runs out
MARGIN_AT_LEAST = timedelta(minutes=2)


def parse_timespan(text: str) -> timedelta:
    """host.json's ``[d.]hh:mm:ss[.fff]`` (``-1``: unbounded, UNBOUNDED_GRACE)."""
    text = text.strip()
    if text == "-1":
        return UNBOUNDED_GRACE
    days = 0
    head, _, rest = text.partition(":")
    if "." in head:
        d, _, head = head.partition(".")
        days = int(d)
    parts = [head, *rest.split(":")]
    if len(parts) != 3:
        raise ValueError(f"functionTimeout {text!r} is not hh:mm:ss")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


@functools.cache
def function_timeout() -> timedelta:
    """host.json's ``functionTimeout`` (DEFAULT_TIMEOUT if unset)."""
    host = orjson.loads(HOST_JSON.read_bytes())
    raw = host.get("functionTimeout")
    return DEFAULT_TIMEOUT if raw is None else parse_timespan(str(raw))


def budget_for(timeout: timedelta) -> timedelta:
    """``timeout`` less the margin: a fifth, at least 2 minutes (at most half of it)."""
    margin = max(timeout * MARGIN_SHARE, min(MARGIN_AT_LEAST, timeout / 2))
    return timeout - margin


def run_budget() -> timedelta:
    """How long a long-running invocation may work before it stops to continue later."""
    return budget_for(function_timeout())
