"""One suite over both budget stores (in-process and real Redis): same semantics."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.budget import MemoryBudgetStore, Plan, PlanMissError, SessionKey
from service.budget.protocol import BudgetStore
from service.errors import SessionClosedError, SessionNotFoundError

A = SessionKey("tenantA", "s1")


@pytest.mark.asyncio
async def test_consume_until_exhausted_never_negative(store: BudgetStore) -> None:
    await store.create(A, budget=3, ttl_s=60)
    grants = [await store.try_consume(A, None, 1) for _ in range(5)]
    assert [g.granted for g in grants] == [True, True, True, False, False]
    assert [g.remaining for g in grants] == [2, 1, 0, 0, 0]
    assert [g.before for g in grants] == [3, 2, 1, 0, 0]
    assert await store.remaining(A) == 0


@pytest.mark.asyncio
async def test_cost_larger_than_remaining_is_refused_and_writes_nothing(store: BudgetStore) -> None:
    await store.create(A, budget=3, ttl_s=60)
    assert (await store.try_consume(A, "r1", 2)).granted
    g = await store.try_consume(A, "r2", 2)
    assert not g.granted and g.remaining == 1 and g.wanted
    assert await store.remaining(A) == 1


@pytest.mark.asyncio
async def test_retry_with_same_request_id_replays_without_second_charge(store: BudgetStore) -> None:
    await store.create(A, budget=2, ttl_s=60)
    first = await store.try_consume(A, "req-1", 1)
    again = await store.try_consume(A, "req-1", 1)
    assert first.granted and again.granted and again.replayed and not first.replayed
    assert (again.before, again.remaining) == (first.before, first.remaining) == (2, 1)
    assert await store.remaining(A) == 1
    # a refused request replays as refused even after budget state changed
    await store.try_consume(A, "req-2", 1)
    refused = await store.try_consume(A, "req-3", 1)
    assert not refused.granted
    assert not (await store.try_consume(A, "req-3", 1)).granted
    assert await store.remaining(A) == 0


@pytest.mark.asyncio
async def test_plan_picks_the_answer_at_the_held_budget(store: BudgetStore) -> None:
    await store.create(A, budget=3, ttl_s=60)
    plan = Plan(lo=1, wants=(True, False, False))  # intervene only at remaining == 1
    g = await store.try_consume(A, "p1", 1, plan)
    assert (g.granted, g.wanted, g.before, g.remaining) == (False, False, 3, 3)
    with pytest.raises(PlanMissError) as miss:
        await store.try_consume(A, "p2", 1, Plan(lo=0, wants=(True, True)))
    assert miss.value.remaining == 3
    assert await store.remaining(A) == 3
    await store.try_consume(A, None, 1)
    await store.try_consume(A, None, 1)
    g = await store.try_consume(A, "p3", 1, plan)
    assert (g.granted, g.before, g.remaining) == (True, 1, 0)


@pytest.mark.asyncio
async def test_unknown_session_and_other_tenant_are_not_found(store: BudgetStore) -> None:
    await store.create(A, budget=1, ttl_s=60)
    other = SessionKey("tenantB", "s1")
    with pytest.raises(SessionNotFoundError):
        await store.try_consume(other, None, 1)
    with pytest.raises(SessionNotFoundError):
        await store.describe(other)
    assert await store.remaining(A) == 1


@pytest.mark.asyncio
async def test_closed_session_refuses_decisions_and_second_outcome(store: BudgetStore) -> None:
    await store.create(A, budget=2, ttl_s=60, horizon=30, metadata={"task": "x"})
    await store.try_consume(A, "before-close", 1)
    info = await store.close(A, success=True, steps=12)
    assert info.closed and info.success and info.steps == 12 and info.remaining == 1
    with pytest.raises(SessionClosedError):
        await store.try_consume(A, "after", 1)
    with pytest.raises(SessionClosedError):
        await store.close(A, success=False, steps=1)
    assert (await store.try_consume(A, "before-close", 1)).replayed  # retries still replay
    d = await store.describe(A)
    assert (d.budget, d.remaining, d.horizon, d.metadata) == (2, 1, 30, {"task": "x"})


@pytest.mark.asyncio
async def test_sliding_ttl(store: BudgetStore) -> None:
    await store.create(A, budget=5, ttl_s=0.4)
    await asyncio.sleep(0.25)
    await store.try_consume(A, None, 1)  # slides the deadline
    await asyncio.sleep(0.25)
    assert await store.remaining(A) == 4  # would have expired without the slide
    await asyncio.sleep(0.5)
    with pytest.raises(SessionNotFoundError):
        await store.remaining(A)


@pytest.mark.asyncio
async def test_64_concurrent_consumers_budget_10_grant_exactly_10(store: BudgetStore) -> None:
    await store.create(A, budget=10, ttl_s=60)
    grants = await asyncio.gather(*(store.try_consume(A, f"c{i}", 1) for i in range(64)))
    assert sum(g.granted for g in grants) == 10
    assert await store.remaining(A) == 0
    # retrying all 64 changes nothing
    again = await asyncio.gather(*(store.try_consume(A, f"c{i}", 1) for i in range(64)))
    assert [g.granted for g in again] == [g.granted for g in grants]
    assert all(g.replayed for g in again)


def test_memory_store_is_atomic_under_threads() -> None:
    store = MemoryBudgetStore()
    asyncio.run(store.create(A, budget=100, ttl_s=60))
    granted: list[bool] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(50):
            g = asyncio.run(store.try_consume(A, f"{n}-{i}", 1))
            with lock:
                granted.append(g.granted)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100 and len(granted) == 400
    assert asyncio.run(store.remaining(A)) == 0
