"""The subscription keeper's lock: ensure() looks and acts under ``state.exclusive(LOCK_BLOB)``
(a blob lease in the app, an asyncio.Lock in the fakes), so keepers that run at once (the
hourly timer, a lifecycle action, an operator) leave one subscription, created once, and
never delete one another's new one. And LEASE_WAIT, the policy a keeper waits with while
another instance holds the lease: it gives up after ``give_up_after`` seconds, not for ever.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from shared.graph import retry
from shared.graph.retry import LEASE_WAIT, Contended
from shared.subscriptions import Outcome, SubscriptionAction, SubscriptionKeeper
from tests.fakes.graph import FakeGraph
from tests.fakes.storage import FakePorts, FakeState
from tests.functional.conftest import settings

# Each step is one turn of the event loop; the second keeper starts this many turns after the
# first, which takes it through every point of the first one's look-and-act (listing, the
# create in flight, the secret's fingerprint not saved yet, saved).
STAGGER = range(8)


async def _after(turns: int, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
    for _ in range(turns):
        await asyncio.sleep(0)
    return await work()


@pytest.mark.parametrize("turns", STAGGER)
async def test_two_keepers_at_once_create_one_subscription_and_delete_none(turns: int) -> None:
    graph = FakeGraph(interleave=True)
    client = graph.client()
    ports = FakePorts(settings=settings(), graph=client, state=FakeState(interleave=True))
    first, second = (SubscriptionKeeper(client, ports.settings, ports.state) for _ in range(2))
    outcomes = await asyncio.gather(first.ensure(), _after(turns, second.ensure))
    assert len(graph.subscriptions) == 1
    creates = [r for r in graph.requests if r.startswith("POST") and r.endswith("/subscriptions")]
    assert len(creates) == 1
    assert not [r for r in graph.requests if r.startswith("DELETE")]
    assert sorted(o.action for o in outcomes) == [
        SubscriptionAction.CREATED,
        SubscriptionAction.KEPT,
    ]
    (sub,) = graph.subscriptions.values()
    assert {o.subscription.id for o in outcomes} == {sub["id"]}
    assert graph.secrets[sub["id"]] == ports.settings.client_state
    await client._http.aclose()  # pyright: ignore[reportPrivateUsage]


class Clock:
    """time.monotonic for shared.graph.retry, moved on by the fake sleep alone."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(retry, "time", fake)
    return fake


async def test_a_lease_held_past_give_up_after_lets_contended_go_up(clock: Clock) -> None:
    policy = dataclasses.replace(LEASE_WAIT, give_up_after=5.0)
    calls = 0

    async def held() -> None:
        nonlocal calls
        calls += 1
        raise Contended("subscription.lock is leased by another instance")

    with pytest.raises(Contended):
        await policy.run(held, sleep=clock.sleep)
    assert calls == len(clock.slept) + 1
    assert sum(clock.slept[:-1]) < 5.0 <= sum(clock.slept)  # no try after the time ran out
    assert all(0.5 <= s <= 1.5 for s in clock.slept)  # 1 s, equal jitter


async def test_a_lease_freed_on_the_third_try_returns_its_result(clock: Clock) -> None:
    calls = 0

    async def freed_later() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Contended("leased")
        return "done"

    assert await LEASE_WAIT.run(freed_later, sleep=clock.sleep) == "done"
    assert calls == 3 and len(clock.slept) == 2


async def test_other_failures_are_not_waited_for(clock: Clock) -> None:
    async def broken() -> None:
        raise OSError("storage unreachable")

    with pytest.raises(OSError):
        await LEASE_WAIT.run(broken, sleep=clock.sleep)
    assert clock.slept == []
