"""Tenant mode: a steady stream of calls, so ``make run`` shows a live pipeline.

About a quarter of the calls also leave a PSTN log row and a fifth a Direct Routing row.
Mostly small calls, now and then a big meeting (several session and participant pages),
sometimes a new version of a record, recent or up to 30 days old (footnote 2 of the latency
table, learn.microsoft.com/graph/change-notifications-overview: a callRecord "might be updated"
beyond the stated latencies; callrecords-api-faq on delayed subsequent versions), its
notification lost now and then (an assumption: the page promises an update notification; the
share stands for the losses it documents elsewhere, throttling drops and the 4-hour retry
limit, on top of the ones the notifier models), and a share of records that 404 on their
first fetch, because Graph notifies before a record can be read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from devtools.graphsim.server import Simulator
from devtools.graphsim.state import utcnow

log = logging.getLogger("graphsim.tenant")


def _sessions(rng: random.Random, maximum: int) -> int:
    roll = rng.random()
    if roll < 0.70:
        n = rng.randint(1, 3)
    elif roll < 0.93:
        n = rng.randint(4, 60)
    elif roll < 0.99:
        n = rng.randint(61, 300)
    else:
        n = rng.randint(301, max(301, maximum))
    return max(1, min(n, maximum))


def _participants(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.6:
        return 2
    if roll < 0.95:
        return rng.randint(3, 40)
    return rng.randint(131, 400)


async def run_tenant(
    sim: Simulator, calls_per_minute: float, max_sessions: int, seed: int | None
) -> None:
    """Produce calls until cancelled."""
    rng = random.Random(seed)
    rate = max(calls_per_minute, 0.01) / 60
    while True:
        await asyncio.sleep(rng.expovariate(rate))
        try:
            _one_call(sim, rng, max_sessions)
        except Exception:  # a generator bug must not stop the tenant
            log.exception("tenant: could not produce a call")


# Assumptions (no page gives a rate): the share of new versions that are of an old call, and
# the share published without a notification reaching the app.
LATE_VERSION_SHARE = 0.4  # of new versions: an old call's, not one of the last 50
LOST_NOTIFICATION_SHARE = 0.2  # of new versions: published without a notification


def _one_call(sim: Simulator, rng: random.Random, max_sessions: int) -> None:
    every = list(sim.state.records.values())  # a dict keeps insertion, i.e. creation, order
    oldest = utcnow() - timedelta(days=30)
    if every and rng.random() < 0.15:
        old = [s for s in every[:-50] if s.start_dt > oldest]
        pool = old if old and rng.random() < LATE_VERSION_SHARE else every[-50:]
        notify = rng.random() >= LOST_NOTIFICATION_SHARE
        spec = sim.new_version(rng.choice(pool).id, notify=notify)
        log.info(
            "tenant: record %s is now version %d%s",
            spec.id,
            spec.version,
            "" if notify else " (its notification lost)",
        )
        return
    duration = timedelta(seconds=rng.randint(30, 3600))
    spec = sim.create_record(
        record_id=None,
        sessions=_sessions(rng, max_sessions),
        participants=_participants(rng),
        segments_per_session=rng.choice([1, 1, 1, 2, 3]),
        start=utcnow() - duration - timedelta(minutes=rng.randint(5, 30)),
        available_after_fetches=1 if rng.random() < 0.25 else 0,
        duplicate_session_ids=rng.random() < 0.05,
    )
    # Some calls reach the phone network: a PSTN (Calling Plan) or a Direct Routing log row;
    # the latter's correlationId is the call record's id.
    roll = rng.random()
    if roll < 0.25:
        sim.usage.add("pstn", sim.usage.pstn_row(spec.start_dt))
    elif roll < 0.45:
        sim.usage.add("directrouting", sim.usage.direct_routing_row(spec.start_dt, spec.id))
    log.info(
        "tenant: new record %s (%d sessions, %d participants)",
        spec.id,
        spec.total_sessions,
        spec.total_participants,
    )
