"""One suite over both budget stores (in-process and real Redis): same semantics.

Concurrency is real: the Redis cases race on the server through a connection pool, the
in-process store races real threads started together at a barrier. No timing asserts with a
tight margin: the TTL cases move the store's clock (memory) or the key's PTTL (Redis).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis as redis_sync

from service.budget import MemoryBudgetStore, Plan, PlanMissError, RedisBudgetStore, make_client
from service.budget.protocol import BudgetStore, Record, RequestIdReusedError, SessionKey
from service.errors import BudgetStoreUnavailableError, SessionClosedError, SessionNotFoundError

A = SessionKey("tenantA", "s1")
Factory = Callable[..., BudgetStore]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def make_store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Factory]:
    """Build stores of one kind with chosen options (closed after the test)."""
    made: list[BudgetStore] = []

    def build(cap: int = 1024, clock: Callable[[], float] | None = None) -> BudgetStore:
        if request.param == "memory":
            s: BudgetStore = MemoryBudgetStore(cap=cap, **({"clock": clock} if clock else {}))
        else:
            s = RedisBudgetStore(make_client(redis_url, 0.5, 0.5), prefix=redis_prefix, cap=cap)
        made.append(s)
        return s

    yield build
    for s in made:
        await s.aclose()


def _plan(lo: int, wants: str) -> Plan:
    """A plan whose answer text at budget c is 'ans@c'."""
    return Plan(
        lo, tuple(w == "1" for w in wants), tuple(f"ans@{lo + i}" for i in range(len(wants)))
    )


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
async def test_replay_returns_the_recorded_answer_text(store: BudgetStore) -> None:
    await store.create(A, budget=3, ttl_s=60)
    g = await store.try_consume(A, "q", 1, _plan(0, "0111"), digest="d1")
    assert g.granted and g.before == 3 and g.answer == ""  # a fresh answer carries no text
    again = await store.try_consume(A, "q", 1, _plan(0, "0000"), digest="d1")  # plan changed
    assert again.replayed and again.granted and again.answer == "ans@3"
    assert await store.remaining(A) == 2


@pytest.mark.asyncio
async def test_reused_request_id_with_another_digest_is_refused_and_writes_nothing(
    store: BudgetStore,
) -> None:
    await store.create(A, budget=3, ttl_s=60)
    await store.try_consume(A, "q", 1, _plan(0, "1111"), digest="body-1")
    with pytest.raises(RequestIdReusedError, match="'q'"):
        await store.try_consume(A, "q", 1, _plan(0, "1111"), digest="body-2")
    assert await store.remaining(A) == 2
    assert (await store.try_consume(A, "q", 1, digest="body-1")).replayed


@pytest.mark.asyncio
async def test_request_id_records_are_capped_per_session(make_store: Factory) -> None:
    store = make_store(cap=4)
    await store.create(A, budget=100, ttl_s=60)
    for i in range(10):
        assert not (await store.try_consume(A, f"r{i}", 1)).replayed
    assert await store.remaining(A) == 90
    # the last cap..2*cap ids are kept (two generations): r8, r9 (current) and r4..r7 (old)
    for i in range(4, 10):
        assert (await store.try_consume(A, f"r{i}", 1)).replayed, i
    assert not (await store.try_consume(A, "r0", 1)).replayed  # forgotten: decided afresh
    assert await store.remaining(A) == 89
    if isinstance(store, RedisBudgetStore):
        keys = store._keys(A)  # noqa: SLF001 - the key layout is what is being bounded
        sizes = [await store._r.hlen(k) for k in keys[1:]]  # noqa: SLF001
        assert sum(sizes) <= 8 and sizes[0] <= 4


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


def _record(rid: str, charge: int, answer: str, deadline_ms: float = 0.0) -> Record:
    return Record(rid, "d", charge, charge > 0, 2, 2 - charge, charge > 0, answer, deadline_ms)


@pytest.mark.asyncio
async def test_settle_records_a_degraded_answer_and_charges_a_fail_open_grant(
    store: BudgetStore,
) -> None:
    await store.create(A, budget=3, ttl_s=60)
    assert await store.settle(A, _record("open-1", 1, "fail-open-answer"))
    assert await store.settle(A, _record("closed-1", 0, "fail-closed-answer"))
    assert await store.remaining(A) == 2  # the fail-open intervene is charged, nothing else
    assert await store.settle(A, _record("open-1", 1, "fail-open-answer"))  # twice: no change
    assert await store.remaining(A) == 2
    g = await store.try_consume(A, "open-1", 1, _plan(0, "1111"), digest="d")
    assert g.replayed and g.answer == "fail-open-answer"
    assert (await store.try_consume(A, "closed-1", 1, digest="d")).answer == "fail-closed-answer"
    assert not await store.settle(SessionKey("tenantA", "gone"), _record("x", 1, "a"))


@pytest.mark.asyncio
async def test_settle_refunds_the_requests_own_late_charge_but_keeps_a_later_retry(
    store: BudgetStore,
) -> None:
    await store.create(A, budget=3, ttl_s=60)
    # the request's own script charged, but its answer never reached the client
    assert (await store.try_consume(A, "late", 1, _plan(0, "1111"), digest="d")).granted
    far = 4e12  # a deadline after every record written here
    assert await store.settle(A, _record("late", 0, "fail-closed-answer", far))
    assert await store.remaining(A) == 3  # refunded
    assert (await store.try_consume(A, "late", 1, digest="d")).answer == "fail-closed-answer"
    # a record written after the degraded request's deadline is a received answer: it stays
    assert (await store.try_consume(A, "retry", 1, _plan(0, "1111"), digest="d")).granted
    assert await store.settle(A, _record("retry", 0, "fail-closed-answer", 1.0))
    assert await store.remaining(A) == 2
    assert (await store.try_consume(A, "retry", 1, digest="d")).answer == "ans@3"


@pytest.mark.asyncio
async def test_redis_script_past_its_deadline_writes_nothing(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisBudgetStore(make_client(redis_url, 0.5, 0.5), prefix=redis_prefix)
    try:
        await store.create(A, budget=3, ttl_s=60)
        store._offset = [-60_000.0, None]  # noqa: SLF001 - fault: every deadline already passed
        with pytest.raises(BudgetStoreUnavailableError, match="deadline"):
            await store.try_consume(A, "late", 1, _plan(0, "1111"), digest="d")
        store._down_until.clear()  # noqa: SLF001 - skip the cooldown
        store._offset = [None, None]  # noqa: SLF001 - recalibrate from TIME
        assert await store.remaining(A) == 3
        g = await store.try_consume(A, "late", 1, _plan(0, "1111"), digest="d")
        assert g.granted and not g.replayed  # nothing had been recorded under the id
    finally:
        await store.aclose()


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
async def test_sliding_ttl(make_store: Factory, redis_url: str) -> None:
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    await store.create(A, budget=5, ttl_s=60)
    if isinstance(store, RedisBudgetStore):
        raw = redis_sync.Redis.from_url(redis_url)
        key = store._keys(A)[0]  # noqa: SLF001
        raw.pexpire(key, 5_000)  # as if 55 s had passed
        await store.try_consume(A, None, 1)  # slides the deadline back to 60 s
        assert raw.pttl(key) > 50_000
        raw.pexpire(key, 1)  # as if the whole TTL had passed
        await asyncio.sleep(0.05)
        raw.close()
    else:
        now[0] += 55
        await store.try_consume(A, None, 1)
        now[0] += 55  # 110 s after creation, 55 s after the last use
        assert await store.remaining(A) == 4
        now[0] += 61
    with pytest.raises(SessionNotFoundError):
        await store.remaining(A)


@pytest.mark.asyncio
async def test_redis_64_concurrent_consumers_budget_10_grant_exactly_10(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisBudgetStore(make_client(redis_url, 2.0, 2.0), prefix=redis_prefix)
    try:
        await store.create(A, budget=10, ttl_s=60)
        grants = await asyncio.gather(*(store.try_consume(A, f"c{i}", 1) for i in range(64)))
        assert sum(g.granted for g in grants) == 10
        assert sorted(g.before for g in grants if g.granted) == list(range(1, 11))
        assert await store.remaining(A) == 0
        again = await asyncio.gather(*(store.try_consume(A, f"c{i}", 1) for i in range(64)))
        assert [g.granted for g in again] == [g.granted for g in grants]
        assert all(g.replayed for g in again)
    finally:
        await store.aclose()


def test_memory_store_is_atomic_under_threads() -> None:
    """64 threads released together on budget 10, then 20 threads on one request id."""
    store = MemoryBudgetStore()
    asyncio.run(store.create(A, budget=10, ttl_s=60))
    results: list[tuple[str, bool, int, bool]] = []
    lock = threading.Lock()

    def run(rids: list[str]) -> None:
        barrier = threading.Barrier(len(rids))

        def worker(rid: str) -> None:
            barrier.wait()
            g = asyncio.run(store.try_consume(A, rid, 1))
            with lock:
                results.append((rid, g.granted, g.before, g.replayed))

        threads = [threading.Thread(target=worker, args=(r,)) for r in rids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run([f"c{i}" for i in range(64)])
    assert len(results) == 64 and sum(r[1] for r in results) == 10
    assert sorted(r[2] for r in results if r[1]) == list(range(1, 11))
    assert asyncio.run(store.remaining(A)) == 0
    asyncio.run(store.create(A, budget=10, ttl_s=60))
    results.clear()
    run(["same"] * 20)
    assert sum(not r[3] for r in results) == 1 and all(r[1] for r in results)
    assert asyncio.run(store.remaining(A)) == 9
