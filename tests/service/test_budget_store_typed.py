"""Typed sessions (one budget per intervention type) over both stores: the same semantics.

The plan's actions come from a rule written here (prefer the costlier type when it fits,
else the cheaper one), so the expected charges are computed independently of the stores.
Concurrency is real: Redis races on the server through a pool; the in-process store races
threads released together at a barrier.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
import redis as redis_sync

from service.budget import MemoryBudgetStore, RedisBudgetStore, make_client
from service.budget.protocol import (
    BudgetStore,
    RequestIdReusedError,
    SessionKey,
    SessionTypesError,
    TypedPlan,
    TypedPlanMissError,
    TypedRecord,
)
from service.errors import SessionClosedError

A = SessionKey("tenantA", "typed1")
TYPES = ("a", "b")
COSTS = (1, 2)


def rule(c: tuple[int, ...], costs: tuple[int, ...] = COSTS) -> int:
    """The test's policy: b when it fits, else a when it fits, else proceed."""
    if c[1] >= costs[1]:
        return 2
    return 1 if c[0] >= costs[0] else 0


def box_plan(lo: tuple[int, int], hi: tuple[int, int], act=rule, costs=COSTS) -> TypedPlan:
    """Plan over lo..hi (inclusive) with answer text 'ans@c1,c2' per cell."""
    cells = list(itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi, strict=True))))
    return TypedPlan(
        TYPES,
        costs,
        lo,
        tuple(b - a + 1 for a, b in zip(lo, hi, strict=True)),
        tuple(act(c) for c in cells),
        tuple(f"ans@{c[0]},{c[1]}" for c in cells),
    )


@pytest.mark.asyncio
async def test_each_type_is_charged_alone_and_exhausting_one_leaves_the_other(
    store: BudgetStore,
) -> None:
    info = await store.create_typed(A, TYPES, (3, 4), ttl_s=60)
    assert (info.types, info.budgets, info.remainings, info.budget) == (TYPES, (3, 4), (3, 4), 7)
    plan = box_plan((0, 0), (3, 4))
    seen = []
    for i in range(8):
        g = await store.try_consume_typed(A, f"r{i}", plan)
        seen.append((g.before, g.action, g.remaining))
    # b (cost 2) twice: 4 -> 2 -> 0; then a three times; then nothing is left
    assert seen == [
        ((3, 4), 2, (3, 2)),
        ((3, 2), 2, (3, 0)),
        ((3, 0), 1, (2, 0)),
        ((2, 0), 1, (1, 0)),
        ((1, 0), 1, (0, 0)),
        ((0, 0), 0, (0, 0)),
        ((0, 0), 0, (0, 0)),
        ((0, 0), 0, (0, 0)),
    ]
    d = await store.describe(A)
    assert (d.remainings, d.remaining, d.budgets, d.budget) == ((0, 0), 0, (3, 4), 7)


@pytest.mark.asyncio
async def test_a_wanted_type_that_does_not_fit_is_not_charged(store: BudgetStore) -> None:
    await store.create_typed(A, TYPES, (2, 1), ttl_s=60)
    always_b = TypedPlan(TYPES, COSTS, (0, 0), (3, 2), (2,) * 6)  # b costs 2 > 1 held
    g = await store.try_consume_typed(A, "x", always_b)
    assert (g.wanted, g.action, g.granted, g.remaining) == (2, 0, False, (2, 1))
    assert (await store.describe(A)).remainings == (2, 1)


@pytest.mark.asyncio
async def test_replay_returns_the_record_and_never_charges_twice(store: BudgetStore) -> None:
    await store.create_typed(A, TYPES, (3, 1), ttl_s=60)
    plan = box_plan((0, 0), (3, 1), act=lambda c: 1 if c[0] else 0, costs=(1, 1))
    g1 = await store.try_consume_typed(A, "same", plan, digest="d1")
    assert (g1.action, g1.before, g1.remaining, g1.replayed) == (1, (3, 1), (2, 1), False)
    for _ in range(3):
        g = await store.try_consume_typed(A, "same", plan, digest="d1")
        assert g.replayed and (g.action, g.before, g.remaining) == (1, (3, 1), (2, 1))
        assert g.answer == "ans@3,1"
    assert (await store.describe(A)).remainings == (2, 1)
    with pytest.raises(RequestIdReusedError):
        await store.try_consume_typed(A, "same", plan, digest="other")
    assert (await store.describe(A)).remainings == (2, 1)


@pytest.mark.asyncio
async def test_box_miss_types_mismatch_and_closed_write_nothing(store: BudgetStore) -> None:
    await store.create_typed(A, TYPES, (3, 1), ttl_s=60)
    with pytest.raises(TypedPlanMissError) as miss:
        await store.try_consume_typed(A, "m", box_plan((0, 0), (2, 1)))
    assert miss.value.remaining == (3, 1)
    other = TypedPlan(("a", "c"), COSTS, (0, 0), (4, 2), (1,) * 8)
    with pytest.raises(
        SessionTypesError, match="holds budgets for a, b; the served model has a, c"
    ):
        await store.try_consume_typed(A, "t", other)
    with pytest.raises(SessionTypesError):  # a one-type call on a typed session
        await store.try_consume(A, "one", 1)
    assert (await store.describe(A)).remainings == (3, 1)
    # a typed call on a one-type session
    B = SessionKey("tenantA", "plain")
    await store.create(B, 3, ttl_s=60)
    with pytest.raises(SessionTypesError, match="holds budgets for one untyped budget"):
        await store.try_consume_typed(B, "t", box_plan((0, 0), (3, 1)))
    assert await store.remaining(B) == 3
    # the request ids of refused calls were not recorded: a good call with one now answers
    g = await store.try_consume_typed(A, "m", box_plan((0, 0), (3, 1)))
    assert not g.replayed and g.action == 1  # b costs 2 > 1: a
    await store.close(A, True, 5)
    with pytest.raises(SessionClosedError):
        await store.try_consume_typed(A, "after", box_plan((0, 0), (3, 1)))


@pytest.mark.asyncio
async def test_redis_64_concurrent_typed_decisions_a3_b1(redis_url: str, redis_prefix: str) -> None:
    """Budgets {a: 3, b: 1}, both cost 1, every cell wants b then a: exactly 3 a and 1 b."""
    store = RedisBudgetStore(make_client(redis_url, 2.0, 2.0), prefix=redis_prefix)
    try:
        for trial in range(5):
            key = SessionKey("tenantA", f"race{trial}")
            await store.create_typed(key, TYPES, (3, 1), ttl_s=60)
            plan = box_plan((0, 0), (3, 1), act=lambda c: rule(c, (1, 1)), costs=(1, 1))
            grants = await asyncio.gather(
                *(store.try_consume_typed(key, f"c{i}", plan) for i in range(64))
            )
            actions = [g.action for g in grants]
            assert actions.count(1) == 3 and actions.count(2) == 1, actions
            assert (await store.describe(key)).remainings == (0, 0)
            again = await asyncio.gather(
                *(store.try_consume_typed(key, f"c{i}", plan) for i in range(64))
            )
            assert [g.action for g in again] == actions and all(g.replayed for g in again)
            assert (await store.describe(key)).remainings == (0, 0)
        raw = redis_sync.Redis.from_url(redis_url, decode_responses=True)
        h = raw.hgetall(f"{redis_prefix}{{tenantA:race0}}")
        raw.close()
        assert (h["types"], h["budgets"], h["remainings"], h["remaining"]) == (
            "a,b",
            "3,1",
            "0,0",
            "0",
        )
    finally:
        await store.aclose()


def test_memory_typed_store_is_atomic_under_threads() -> None:
    """64 threads released together on {a: 3, b: 1}, then 20 threads on one request id."""
    store = MemoryBudgetStore()
    plan = box_plan((0, 0), (3, 1), act=lambda c: rule(c, (1, 1)), costs=(1, 1))
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def run(rids: list[str]) -> None:
        barrier = threading.Barrier(len(rids))

        def worker(rid: str) -> None:
            barrier.wait()
            g = asyncio.run(store.try_consume_typed(A, rid, plan))
            with lock:
                results.append((g.action, g.replayed))

        threads = [threading.Thread(target=worker, args=(r,)) for r in rids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    for _ in range(3):
        asyncio.run(store.create_typed(A, TYPES, (3, 1), ttl_s=60))
        results.clear()
        run([f"c{i}" for i in range(64)])
        actions = [a for a, _ in results]
        assert len(actions) == 64 and actions.count(1) == 3 and actions.count(2) == 1
        assert asyncio.run(store.describe(A)).remainings == (0, 0)
    asyncio.run(store.create_typed(A, TYPES, (3, 1), ttl_s=60))
    results.clear()
    run(["same"] * 20)
    assert sum(not r for _, r in results) == 1 and {a for a, _ in results} == {2}
    assert asyncio.run(store.describe(A)).remainings == (3, 0)


@pytest.mark.asyncio
async def test_settle_typed_records_refunds_its_own_late_charge_and_keeps_a_retry(
    store: BudgetStore,
) -> None:
    await store.create_typed(A, TYPES, (3, 2), ttl_s=60)
    plan = box_plan((0, 0), (3, 2))
    # no record yet: the degraded answer is recorded, nothing charged, a retry replays it
    assert await store.settle_typed(A, TypedRecord("d1", "dg", (3, 2), "degraded@3,2"))
    g = await store.try_consume_typed(A, "d1", plan, digest="dg")
    assert g.replayed and g.answer == "degraded@3,2" and g.action == 0
    assert (await store.describe(A)).remainings == (3, 2)
    # the request's own script charged b (2) before its deadline; its reply was lost
    g = await store.try_consume_typed(A, "d2", plan, digest="dg")
    assert g.action == 2 and (await store.describe(A)).remainings == (3, 0)
    late = TypedRecord("d2", "dg", (3, 2), "degraded@3,2", deadline_ms=1e15)
    assert await store.settle_typed(A, late)
    assert await store.settle_typed(A, late)  # twice: no second refund
    d = await store.describe(A)
    assert (d.remainings, d.remaining) == ((3, 2), 5)
    again = await store.try_consume_typed(A, "d2", plan, digest="dg")
    assert again.replayed and again.answer == "degraded@3,2" and again.action == 0
    # a record written after the degraded request's deadline (a retry that got through) stays
    g = await store.try_consume_typed(A, "d3", plan, digest="dg")
    assert g.action == 2
    assert await store.settle_typed(A, TypedRecord("d3", "dg", (3, 2), "degraded", deadline_ms=0))
    assert (await store.describe(A)).remainings == (3, 0)
    assert (await store.try_consume_typed(A, "d3", plan, digest="dg")).action == 2
    assert not await store.settle_typed(SessionKey("tenantA", "gone"), late)
