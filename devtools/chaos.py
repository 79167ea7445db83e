"""`make chaos`: lose nothing while Graph throttles, drops and 404s, and Azurite and the app die.

Acts as Graph's delivery side: sends change notifications (with duplicates, in batches, for
several versions of each record) to the app under devtools.host, retrying every non-2xx
answer with backoff as Graph does. Meanwhile the simulator injects 429 (with Retry-After),
503, dropped connections, records that 404 for their first two fetches, and records that
never appear; Azurite and the app host are each killed and restarted once, Azurite is paused
(SIGSTOP: connections open, nothing answers) for ``pause_seconds``, and once everything is
sent Graph answers every read with 500 for ``outage_seconds`` (3 minutes: longer than the
host's five tries 30 s apart). Then it waits for the queue to drain and checks the archive
against the simulator:

- every record archived at its latest version, complete (equal to the simulator's record);
- no blob twice, none for a version that does not exist;
- in poison only the never-appearing records, each with its reason.

Every figure comes from counters: the simulator's statistics, the host's /_host/metrics, the
archive's listing and the queues; none from the log, whose wording is for people.
Prints the figures as a table (and returns non-zero if anything was lost or duplicated).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools import stack
from devtools.graphsim.notifier import change_notification

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "callrecords"
CONTAINER = "callrecords"


@dataclass
class Plan:
    records: int = 300
    notifications: int = 1000
    updated_share: float = 0.3  # records that get a second version mid-run
    late_share: float = 0.2  # 404 for their first two fetches
    never: int = 5  # records that never appear
    rate_429: float = 0.10
    rate_503: float = 0.05
    rate_drop: float = 0.05
    kill: bool = True
    seed: int = 7
    drain_timeout: float = 900.0
    # How long a record may 404 before poison. Real default: 240 min against Graph's 150;
    # here it must outlast the Graph outage and the backlog the outages cause, or late
    # records would be parked.
    window_minutes: int = 6
    pause_seconds: float = 20.0  # Azurite SIGSTOPped mid-sending
    outage_seconds: float = 180.0  # every Graph read answered 500 once everything is sent
    # The host's visibilityTimeout (host.json: 30 s); a smaller run scales it with the outage.
    host_retry_seconds: float | None = None
    retry_max_seconds: int = 15  # ARCHIVE_RETRY_MAX_SECONDS: the backoff cap, scaled down


@dataclass
class Figures:
    sent: int = 0
    posts: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    started: float = field(default_factory=time.monotonic)
    sending_done: float = 0.0
    drained: float = 0.0


def deliver(client: httpx.Client, url: str, body: bytes, figures: Figures) -> None:
    """POST one batch until it gets a 2xx, backing off like Graph (bounded here)."""
    delay = 0.2
    for _ in range(60):
        figures.posts += 1
        try:
            r = client.post(url, content=body, headers={"Content-Type": "application/json"})
            figures.answers[str(r.status_code)] += 1
            if 200 <= r.status_code < 300:
                return
        except httpx.HTTPError as exc:
            figures.answers[type(exc).__name__] += 1
        figures.redelivered += 1
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise RuntimeError("a batch was never accepted: Graph would keep trying for 4 hours")


def run(plan: Plan, out=sys.stdout) -> dict[str, object]:
    rng = random.Random(plan.seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    st = stack.start(work / "azurite", seed=plan.seed, workdir=work / "graphsim")
    az, sim = st.azurite, st.sim
    assert sim is not None
    state = st.client_state
    env = st.app_env(
        QUEUE,
        CONTAINER,
        ARCHIVE_RETRY_BASE_SECONDS="1",
        ARCHIVE_RETRY_WINDOW_MINUTES=str(plan.window_minutes),
        ARCHIVE_RETRY_MAX_SECONDS=str(plan.retry_max_seconds),
        DEVHOST_QUEUE_LEASE_SECONDS="20",
        PYTHONUNBUFFERED="1",
        **(
            {"DEVHOST_VISIBILITY_TIMEOUT_SECONDS": str(plan.host_retry_seconds)}
            if plan.host_retry_seconds
            else {}
        ),
    )
    st.create_container(CONTAINER)
    st.create_queue(QUEUE, poison=True)
    app = st.host(env, work / "host.log")  # timers off: only what chaos sends happens
    app.start()
    figures = Figures()
    try:
        never = set()
        ids: list[str] = []
        for i in range(plan.records):
            late = rng.random() < plan.late_share
            is_never = i < plan.never
            rec = sim.client.create_record(
                sessions=rng.choice([1, 2, 5, 61, 130]),
                participants=rng.choice([2, 3, 131]),
                available_after_fetches=2 if late else 0,
                never_available=is_never,
                notify=False,
            )
            ids.append(rec["id"])
            if is_never:
                never.add(rec["id"])
        updated = [i for i in ids if i not in never and rng.random() < plan.updated_share]
        sim.client.reset_stats()
        sim.client.set_faults(
            rate_429=plan.rate_429, rate_503=plan.rate_503, rate_drop=plan.rate_drop, retry_after=1
        )

        # Every record notified at least once, the rest of the budget spent on repeats.
        order = ids + [rng.choice(ids) for _ in range(max(0, plan.notifications - len(ids)))]
        rng.shuffle(order)
        third = len(order) // 3
        half = len(order) // 2
        url = f"http://127.0.0.1:{app.port}/api/notifications"
        with httpx.Client(timeout=10) as client:
            sent = 0
            while sent < len(order):
                size = rng.choice([1, 1, 2, 5, 10, 20])
                chunk = order[sent : sent + size]
                items = [change_notification(r, state) for r in chunk]
                if rng.random() < 0.1:
                    items.append(items[0])  # a duplicate inside one batch
                deliver(
                    client,
                    url,
                    orjson.dumps({"value": items}),
                    figures,
                )
                figures.sent += len(items)
                before, sent = sent, sent + len(chunk)
                if before < third <= sent:
                    for rid in updated:  # new versions appear mid-run: notified below
                        sim.client.new_version(rid, notify=False)
                    if plan.kill:
                        # SIGTERM, not SIGKILL: Azurite keeps its data in memory and saves it
                        # on exit; Azure Storage acknowledges only durable writes, so a storage
                        # outage is "refused for a while", not "forgets what it said it stored".
                        # Notifications keep coming while it is down: they must get 503s.
                        print("  chaos: stopping Azurite for 3 s", file=out, flush=True)
                        az.stop()
                        threading.Timer(3, az.restart).start()
                if plan.pause_seconds and before < half <= sent:
                    # Paused, not killed: connections open and nothing answers, the way a
                    # storage endpoint black-holes traffic. The webhook must still answer
                    # 503 in time, and no invocation cut off meanwhile may park a record.
                    print(
                        f"  chaos: pausing Azurite (SIGSTOP) for {plan.pause_seconds:.0f} s",
                        file=out,
                        flush=True,
                    )
                    az.pause()
                    threading.Timer(plan.pause_seconds, az.resume).start()
                if plan.kill and before < 2 * third <= sent:
                    print("  chaos: killing the app host (SIGKILL) for 2 s", file=out, flush=True)
                    app.kill()
                    threading.Timer(2, app.start).start()
            for rid in updated:  # every new version is notified after it exists
                deliver(
                    client, url, orjson.dumps({"value": [change_notification(rid, state)]}), figures
                )
                figures.sent += 1
        figures.sending_done = time.monotonic()
        if plan.outage_seconds:
            print(
                f"  chaos: Graph answers 500 to every read for {plan.outage_seconds:.0f} s",
                file=out,
                flush=True,
            )
            sim.client.set_faults(outage=500)

            def end_outage() -> None:
                with contextlib.suppress(Exception):  # the run may be over already
                    sim.client.set_faults(outage=0)

            ender = threading.Timer(plan.outage_seconds, end_outage)
            ender.daemon = True
            ender.start()

        queue = QueueClient.from_connection_string(az.connection_string, QUEUE)
        container = ContainerClient.from_connection_string(az.connection_string, CONTAINER)
        expected_ids = [i for i in ids if i not in never]
        latest = {i: sim.client.record(i)["version"] for i in expected_ids}
        deadline = time.monotonic() + plan.drain_timeout
        idle_since: float | None = None
        while time.monotonic() < deadline:
            names = {b.name for b in container.list_blobs()}
            have = {
                n.split("/")[3]
                for n in names
                if n.endswith(f"/v{latest.get(n.split('/')[3], -1)}.json")
            }
            depth = queue.get_queue_properties().approximate_message_count or 0
            if depth == 0 and len(have) == len(expected_ids):
                break
            # An empty queue for a whole window with records still missing: they are lost.
            idle_since = (idle_since or time.monotonic()) if depth == 0 else None
            if idle_since and time.monotonic() - idle_since > 60 * plan.window_minutes:
                break
            time.sleep(1)
        figures.drained = time.monotonic()
        sim.client.set_faults(reset=True)
        stats = sim.client.stats()
        metrics = app.metrics()
        return check(plan, figures, stats, az, sim, expected_ids, latest, never, work, out, metrics)
    finally:
        app.stop()
        st.close()


def check(
    plan, figures, stats, az, sim, expected_ids, latest, never, work, out, metrics
) -> dict[str, object]:
    container = ContainerClient.from_connection_string(az.connection_string, CONTAINER)
    blobs = [b.name for b in container.list_blobs()]
    per_record = Counter(n.split("/")[3] for n in blobs)
    lost, incomplete = [], []
    for rid in expected_ids:
        mine = [n for n in blobs if n.split("/")[3] == rid]
        name = next((n for n in mine if n.endswith(f"/v{latest[rid]}.json")), None)
        if name is None:
            lost.append(rid)
        elif orjson.loads(container.download_blob(name).readall()) != sim.client.expected(rid):
            incomplete.append(rid)
    duplicated = len(blobs) - len(set(blobs))
    bogus = [
        n for n in blobs if int(n.rsplit("/v", 1)[1].split(".")[0]) > latest.get(n.split("/")[3], 0)
    ]
    poison = QueueClient.from_connection_string(az.connection_string, f"{QUEUE}-poison")
    parked = [
        orjson.loads(base64.b64decode(m.content)) for m in poison.peek_messages(max_messages=32)
    ]
    parked_ids = {p.get("id") for p in parked}
    queue_functions: dict[str, dict[str, int]] = metrics["queue_messages"]
    invocations: dict[str, dict[str, int]] = metrics["invocations"]
    record_answers: dict[str, int] = stats.get("responses_by_kind", {}).get("record", {})
    responses = stats.get("responses", {})
    result = {
        "records": plan.records,
        "notifications sent (with duplicates)": figures.sent,
        "webhook POSTs (incl. redeliveries)": figures.posts,
        "webhook answers": dict(figures.answers),
        "Graph requests": sum(stats.get("requests", {}).values()),
        "Graph answers": responses,
        "faults injected": stats.get("faults", {}),
        "Azurite paused (s) / Graph 500 outage (s)": f"{plan.pause_seconds:g} / "
        f"{plan.outage_seconds:g}",
        # 404: a record not published yet (each one fetched again later, or parked in the
        # end); 429/5xx: the client's own retries, then fetched again later (the 500s are
        # the outage phase, outlived by requeueing).
        "record fetches answered 404 / 429 / 5xx": {
            k: v
            for k, v in sorted(record_answers.items())
            if k in ("404", "429", "500", "502", "503", "504")
        },
        "host invocation failures (retried by the host)": sum(
            invocations.get(name, {}).get("failed", 0) for name in queue_functions
        ),
        "queue messages retried / parked by the host": " / ".join(
            str(sum(q.get(event, 0) for q in queue_functions.values()))
            for event in ("retried", "poisoned")
        ),
        "token requests": stats.get("token_requests"),
        "records expected": len(expected_ids),
        "records at latest version, complete": len(expected_ids) - len(lost) - len(incomplete),
        "lost": len(lost),
        "incomplete": len(incomplete),
        "duplicated blobs": duplicated,
        "blobs for versions that do not exist": len(bogus),
        "records with >1 version archived": sum(1 for c in per_record.values() if c > 1),
        "in poison (messages / distinct records)": f"{len(parked)} / {len(parked_ids)}",
        "poison = never-appearing, each with a reason": parked_ids == never
        and all(p.get("reason") for p in parked),
        "time to send (s)": round(figures.sending_done - figures.started, 1),
        "time to drain after sending (s)": round(figures.drained - figures.sending_done, 1),
    }
    result["ok"] = (
        not lost
        and not incomplete
        and not duplicated
        and not bogus
        and result["poison = never-appearing, each with a reason"]
    )
    width = max(len(k) for k in result)
    print(f"\n| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|", file=out)
    for key, value in result.items():
        print(f"| {key.ljust(width)} | {value} |", file=out)
    if lost or incomplete:
        print(
            f"lost: {lost[:5]} incomplete: {incomplete[:5]}; host log: {work / 'host.log'}",
            file=out,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Chaos run: faults, kills, and a check that nothing is lost."
    )
    p.add_argument("--records", type=int, default=300)
    p.add_argument("--notifications", type=int, default=1000)
    p.add_argument("--never", type=int, default=5)
    p.add_argument("--no-kill", action="store_true")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pause-seconds", type=float, default=Plan.pause_seconds)
    p.add_argument("--outage-seconds", type=float, default=Plan.outage_seconds)
    args = p.parse_args(argv)
    plan = Plan(
        records=args.records,
        notifications=args.notifications,
        never=args.never,
        kill=not args.no_kill,
        seed=args.seed,
        pause_seconds=args.pause_seconds,
        outage_seconds=args.outage_seconds,
    )
    print(f"chaos: {plan}", flush=True)
    result = run(plan)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
