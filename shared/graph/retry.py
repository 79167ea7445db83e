"""Every retry decision of the app: one ``RetryPolicy`` type, one instance per use.

Modelled on azure-core's ``RetryPolicyBase`` (azure/core/pipeline/policies/_retry.py): a
number of tries, an exponential back-off (``backoff * factor ** retries``, capped), a
Retry-After the service sent taking precedence over the computed back-off, and the statuses
and exception classes that are worth another try. Added here: jitter (instances that failed
together in an outage must not come back in the same second), a longest wait that is done in
place (a longer one raises, so the caller can queue the work again instead of holding an
instance), a give-up age (for work retried across queue messages), and whether a request
that may have landed (a POST after a dropped connection) is tried again.

Graph's advice on throttling is to wait the Retry-After it sends, else back off
exponentially (learn.microsoft.com/graph/throttling, "Best practices to handle
throttling"); Azure Storage's client retries are the SDK's own (``storage_retry`` builds one
from a policy here: learn.microsoft.com/azure/storage/blobs/storage-retry-policy-python).

The uses, each one instance below or built from settings by a function below:

==========================  ==================================================================
``GRAPH_IN_PLACE``          every Graph request (shared/graph/client.py): network faults and
                            429/503/504, up to 4 tries, while the wait is at most 5 s
``LIST_THROTTLED``          List callRecords pages (shared/reconcile.py): a throttle is waited
                            out, at most 2 min at a time
``BACKFILL_THROTTLED``      getPstnCalls / getDirectRoutingCalls in a CLI backfill
                            (shared/usage/sync.py): the same
``RECORD_PACE``             one record's per-record limit (shared/recordfetch.py): waited in
                            place up to 30 s, else the fetch pauses at a checkpoint
``RESUME_PAUSED``           ``cli.py fetch``: a paused fetch continued after its Retry-After
``STORAGE_QUEUE``           the queue clients' SDK retry (shared/storage.py): the webhook must
                            answer Graph within 3 s
``LEASE_WAIT``              a blob lease another instance holds (the subscription keeper's
                            lock, shared/blobstore.py): asked again for up to 150 s
``not_yet(settings)``       a record Graph answers 404 for (shared/archiver.py): again later,
                            doubling, for ARCHIVE_RETRY_WINDOW_MINUTES
``transient(settings)``     a transient fault of one archiving attempt: again later with full
                            jitter, for ARCHIVE_GIVE_UP_HOURS
``refused(settings)``       a 403 inside the permission grace: doubling up to 6 h, for
                            GRAPH_PERMISSION_GRACE_HOURS
``slice_again(settings)``   a reconciliation slice that met a transient fault
==========================  ==================================================================
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TypeVar

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from shared.graph.errors import (
    GraphError,
    NotFound,
    Throttled,
    Unreachable,
    is_transient_status,
)
from shared.settings import Settings
from shared.workqueue import QueueUnavailable

T = TypeVar("T")

MAX_QUEUE_DELAY = 7 * 24 * 3600  # the longest visibility timeout a queue message can get


class Jitter(StrEnum):
    """How a computed back-off is spread."""

    NONE = "none"
    EQUAL = "equal"  # between half and one and a half times the back-off
    FULL = "full"  # anywhere between 0 and the back-off (AWS's "full jitter")


class RetryAfter(StrEnum):
    """What a Retry-After the service sent means for the wait."""

    IGNORE = "ignore"
    EXACT = "exact"  # wait exactly that (azure-core's rule, and Graph's advice)
    AT_LEAST = "at least"  # never less than that, else the back-off


class RetryLater(Exception):
    """Work that stopped on purpose and asks to be run again after ``retry_after`` seconds
    (a record's fetch paused at a checkpoint): not a fault, and never a Graph status."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Fault(StrEnum):
    """How a failure of one piece of queued work (a record, a slice) is treated."""

    NOT_YET = "not yet available"  # Graph 404: published up to 150 min after the call
    TRANSIENT = "transient"  # outlived: back on the queue with a back-off, for up to a day
    PERMANENT = "permanent"  # no retry can help: parked at once with the reason
    UNKNOWN = "unknown"  # not classified (a bug?): the host's tries, then parked


def classify_fault(exc: BaseException) -> Fault:
    """Sort a failure of one attempt at queued work into the classes above.

    Transient: Graph 5xx, 408 and 429 (Throttled covers 429/503/504 with Retry-After),
    network errors left after the client's in-place tries, token endpoint failures (the
    credential raises ClientAuthenticationError or its CredentialUnavailableError subclass
    for an unreachable or failing endpoint), storage errors (no answer, or 5xx/408/429), and
    a fetch that paused on purpose (RetryLater). Permanent: any other Graph 4xx; a 401
    reaches here only after the client tried a fresh token, a 403 means the app role is
    missing.
    """
    if isinstance(exc, NotFound):
        return Fault.NOT_YET
    if isinstance(exc, Throttled | Unreachable | RetryLater):
        return Fault.TRANSIENT
    if isinstance(exc, GraphError):
        return Fault.TRANSIENT if is_transient_status(exc.status) else Fault.PERMANENT
    if isinstance(exc, QueueUnavailable | ClientAuthenticationError):
        return Fault.TRANSIENT
    if isinstance(exc, HttpResponseError):
        return Fault.TRANSIENT if is_transient_status(exc.status_code) else Fault.UNKNOWN
    if isinstance(exc, AzureError | OSError | TimeoutError):
        return Fault.TRANSIENT
    # Imported here, not at the top: the queue clients' policy (STORAGE_QUEUE) is read by the
    # notifications webhook, which must not load httpx on a cold start.
    import httpx

    return Fault.TRANSIENT if isinstance(exc, httpx.HTTPError) else Fault.UNKNOWN


def _retry_after_of(exc: BaseException) -> float | None:
    if isinstance(exc, GraphError | RetryLater):
        return exc.retry_after
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again, and after how long (see the module docstring)."""

    name: str
    tries: int | None = 1  # attempts in all; None: no limit by count
    backoff: float = 0.0  # seconds before the first retry (azure-core's backoff_factor)
    factor: float = 2.0  # the back-off grows by this per retry (1: a fixed delay)
    cap: float = math.inf  # the longest computed back-off
    jitter: Jitter = Jitter.NONE
    spread: float = 0.0  # +/- this many seconds, at random (storage's random_jitter_range)
    floor: float = 0.0  # the shortest wait
    limit: float = math.inf  # the longest wait of all, a Retry-After included
    retry_after: RetryAfter = RetryAfter.EXACT
    max_wait: float = math.inf  # a longer wait is not waited: the failure goes up instead
    give_up_after: float = math.inf  # seconds since the first attempt: then no more tries
    statuses: frozenset[int] = frozenset()  # GraphError statuses worth another try
    exceptions: tuple[type[BaseException], ...] = ()  # exception classes worth another try
    # Failures after which a request that is not idempotent (POST) may have landed: not
    # tried again for such a request.
    unsafe: tuple[type[BaseException], ...] = ()
    max_exponent: int = field(default=30, repr=False)

    def retries(self, exc: BaseException) -> bool:
        """Is this failure one the policy tries again?"""
        if isinstance(exc, self.exceptions):
            return True
        return isinstance(exc, GraphError) and exc.status in self.statuses

    def backoff_for(self, retries_done: int, rng: random.Random | None = None) -> float:
        """The computed back-off before retry number ``retries_done + 1`` (no Retry-After)."""
        pick = rng or random
        ceiling = min(self.backoff * self.factor ** min(retries_done, self.max_exponent), self.cap)
        if self.jitter is Jitter.FULL:
            ceiling = pick.uniform(0, ceiling)
        elif self.jitter is Jitter.EQUAL:
            ceiling *= 0.5 + pick.random()
        if self.spread:
            ceiling += pick.uniform(-self.spread, self.spread)
        return max(0.0, ceiling)

    def delay(
        self, retries_done: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retries_done + 1``."""
        wait = self.backoff_for(retries_done, rng)
        if retry_after is not None and self.retry_after is RetryAfter.EXACT:
            wait = retry_after
        elif retry_after is not None and self.retry_after is RetryAfter.AT_LEAST:
            wait = max(wait, retry_after)
        return min(max(wait, self.floor), self.limit)

    def gives_up(self, retries_done: int, elapsed: float = 0.0) -> bool:
        """No more tries: the count is used up or the work is older than ``give_up_after``."""
        if elapsed >= self.give_up_after:
            return True
        return self.tries is not None and retries_done + 1 >= self.tries

    def next_wait(
        self,
        exc: BaseException,
        retries_done: int,
        *,
        idempotent: bool = True,
        elapsed: float = 0.0,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before trying again after ``exc``, or None: let it go up."""
        if not self.retries(exc) or self.gives_up(retries_done, elapsed):
            return None
        if not idempotent and isinstance(exc, self.unsafe):
            return None
        wait = self.delay(retries_done, _retry_after_of(exc), rng)
        return None if wait > self.max_wait else wait

    def waits_in_place(self, wait: float) -> bool:
        """Is a wait of this long done where it is (else the work stops and is queued)?"""
        return wait <= self.max_wait

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        on_retry: Callable[[BaseException, float], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> T:
        """``call()`` until it succeeds or the policy lets its failure go up."""
        retries = 0
        started = time.monotonic()
        while True:
            try:
                return await call()
            except Exception as exc:
                elapsed = time.monotonic() - started
                wait = self.next_wait(exc, retries, idempotent=idempotent, elapsed=elapsed)
                if wait is None:
                    raise
                if on_retry is not None:
                    on_retry(exc, wait)
                retries += 1
                await sleep(wait)


# Every Graph request: network errors and 429/503/504 tried again in place while the wait is
# short (the Retry-After Graph gives, else 0.5 s doubling, +/-50%); a longer wait raises so the
# work is queued again instead of holding an instance. A POST is not sent again after a
# network error: it may have landed.
GRAPH_IN_PLACE = RetryPolicy(
    "Graph request",
    tries=4,
    backoff=0.5,
    jitter=Jitter.EQUAL,
    max_wait=5.0,
    exceptions=(Throttled, Unreachable),
    unsafe=(Unreachable,),
)

# List callRecords (40 requests / 20 s per app, learn.microsoft.com/graph/throttling-limits,
# "Cloud communication service limits"): a throttle the client did not absorb is waited out,
# the Retry-After or 10 s, never more than 2 minutes at a time.
LIST_THROTTLED = RetryPolicy(
    "List callRecords",
    tries=None,
    backoff=10.0,
    factor=1.0,
    limit=120.0,
    exceptions=(Throttled,),
)

# getPstnCalls / getDirectRoutingCalls in a CLI backfill: the same rule (the hourly sync does
# not wait: it stops at its watermark and the next run continues).
BACKFILL_THROTTLED = replace(LIST_THROTTLED, name="PSTN / Direct Routing logs")

# One record's per-record limit (learn.microsoft.com/graph/throttling-limits): a wait up to
# 30 s is done in place; a longer one checkpoints the fetch and queues it again.
RECORD_PACE = RetryPolicy("per-record limit", max_wait=30.0)

# `cli.py fetch` of a huge meeting: each pause is waited out, however many there are.
RESUME_PAUSED = RetryPolicy("resume a paused fetch", tries=None, exceptions=(RetryLater,))

# The queue clients' own retry (azure-storage's LinearRetry is built from this): the webhook
# answers Graph within 3 s, so a sick queue fails fast (then 503, and Graph delivers again)
# instead of sitting in the SDK's default 15 s+ exponential back-off.
STORAGE_QUEUE = RetryPolicy("queue client", tries=3, backoff=0.2, factor=1.0, spread=0.1)


class Contended(Exception):
    """Another instance holds what this work needs (a blob lease, shared/blobstore.py)."""


# A blob lease another instance holds (409 LeaseAlreadyPresent): asked again every 0.5-1.5 s
# for 150 s, two and a half of the 60-second leases blobstore takes: a dead holder's lease
# has expired well before then (learn.microsoft.com/rest/api/storageservices/lease-blob).
LEASE_WAIT = RetryPolicy(
    "blob lease held elsewhere",
    tries=None,
    backoff=1.0,
    factor=1.0,
    jitter=Jitter.EQUAL,
    give_up_after=150.0,
    exceptions=(Contended,),
)


def not_yet(settings: Settings) -> RetryPolicy:
    """A record Graph answers 404 for (published up to 150 minutes after the call,
    learn.microsoft.com/graph/api/callrecords-callrecord-get): ARCHIVE_RETRY_BASE_SECONDS
    doubling per attempt, capped at ARCHIVE_RETRY_MAX_SECONDS, for
    ARCHIVE_RETRY_WINDOW_MINUTES; no jitter (the record is not published any sooner)."""
    return RetryPolicy(
        "not published yet",
        tries=None,
        backoff=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
        limit=MAX_QUEUE_DELAY,
        retry_after=RetryAfter.IGNORE,
        give_up_after=settings.retry_window_minutes * 60,
        exceptions=(Exception,),  # what classify_fault calls NOT_YET
    )


def transient(settings: Settings) -> RetryPolicy:
    """A transient fault of one archiving attempt: exponential with full jitter (uniform
    between 0 and base * 2^attempt, capped), never under a second or the Retry-After Graph
    asked for, for ARCHIVE_GIVE_UP_HOURS since the record was first seen."""
    return RetryPolicy(
        "transient fault",
        tries=None,
        backoff=settings.retry_base_seconds,
        cap=min(settings.retry_max_seconds, MAX_QUEUE_DELAY),
        jitter=Jitter.FULL,
        floor=1.0,
        limit=MAX_QUEUE_DELAY,
        retry_after=RetryAfter.AT_LEAST,
        give_up_after=settings.give_up_hours * 3600,
        exceptions=(Exception,),  # what classify_fault calls TRANSIENT
    )


# A refusal outlasts a transient fault by far: up to a day for a new app role to reach a
# managed identity's tokens, plus however long the grant takes (GRAPH_PERMISSION_GRACE_HOURS).
REFUSED_CAP_FACTOR = 12  # times ARCHIVE_RETRY_MAX_SECONDS: 6 hours by default


def refused(settings: Settings) -> RetryPolicy:
    """A 403 inside the permission grace (shared/permission.py). The refusal is the app's,
    not the record's, and lasts hours, so each refused record backs off much further than
    from a transient fault: doubling from ARCHIVE_RETRY_BASE_SECONDS up to 12 times
    ARCHIVE_RETRY_MAX_SECONDS (6 h), +/-50%. Over a 48-hour refusal that is about 18 Graph
    requests per record instead of the transient policy's ~200 (a unit test counts them);
    records notified meanwhile try within minutes, so the grant is noticed at once, and a
    waiting record is fetched at most 9 h after it."""
    return RetryPolicy(
        "permission refused",
        tries=None,
        backoff=settings.retry_base_seconds,
        cap=min(REFUSED_CAP_FACTOR * settings.retry_max_seconds, MAX_QUEUE_DELAY),
        jitter=Jitter.EQUAL,
        floor=1.0,
        limit=MAX_QUEUE_DELAY,
        retry_after=RetryAfter.IGNORE,
        exceptions=(Exception,),  # what permission.judge accepts
    )


def slice_again(settings: Settings) -> RetryPolicy:
    """A reconciliation slice that met a transient fault: the same slice again after
    ARCHIVE_RETRY_MAX_SECONDS, until it ages out of Graph's 30 days."""
    return RetryPolicy(
        "reconcile slice",
        tries=None,
        backoff=settings.retry_max_seconds,
        factor=1.0,
        retry_after=RetryAfter.IGNORE,
        exceptions=(Exception,),  # what classify_fault calls TRANSIENT
    )
