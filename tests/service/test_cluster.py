"""The budget store and the decision endpoint on a real 3-node Redis Cluster (loopback).

``redis+cluster://`` selects redis-py's cluster client; every script touches one hash-tagged
slot. Concurrency is real: many requests in flight at once through the cluster client's
pools, from two app instances (two "replicas", each with its own client and cache).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis as redis_sync

from service.budget import RedisBudgetStore, SessionKey, make_client
from service.budget.protocol import Record, RequestIdReusedError
from service.errors import SessionClosedError
from tests.service.conftest import running_app
from tests.service.redis_procs import RedisProc

UP = [1.0, 0.0, 0.0, 0.0]  # the test helper intervenes here


def cluster_url(nodes: list[RedisProc]) -> str:
    return f"redis+cluster://127.0.0.1:{nodes[0].port}"


@pytest_asyncio.fixture
async def cluster_store(redis_cluster: list[RedisProc]) -> AsyncIterator[RedisBudgetStore]:
    store = RedisBudgetStore(
        make_client(cluster_url(redis_cluster), 1.0, 1.0), prefix=f"hsc:{uuid.uuid4().hex[:8]}:"
    )
    yield store
    await store.aclose()


@pytest.mark.asyncio
async def test_store_semantics_on_every_node(
    cluster_store: RedisBudgetStore, redis_cluster: list[RedisProc]
) -> None:
    keys = [SessionKey("t", f"s{i}") for i in range(24)]
    for k in keys:
        await cluster_store.create(k, budget=2, ttl_s=60, horizon=9)
    per_node = [redis_sync.Redis(port=n.port).dbsize() for n in redis_cluster]
    assert all(size > 0 for size in per_node), per_node  # the sessions span all three masters
    for k in keys:
        g = await cluster_store.try_consume(k, "r1", 1, digest="d")
        assert (g.granted, g.before, g.remaining) == (True, 2, 1)
        assert (await cluster_store.try_consume(k, "r1", 1, digest="d")).replayed
        with pytest.raises(RequestIdReusedError):
            await cluster_store.try_consume(k, "r1", 1, digest="other")
        assert await cluster_store.settle(k, Record("r2", "d", 1, True, 1, 0, True, "open"))
        info = await cluster_store.close(k, success=True, steps=5)
        assert (info.remaining, info.closed, info.horizon) == (0, True, 9)
        with pytest.raises(SessionClosedError):
            await cluster_store.try_consume(k, "r3", 1)


@pytest.mark.asyncio
async def test_64_concurrent_decisions_on_budget_10_grant_exactly_10(
    redis_cluster: list[RedisProc], artifact_dir: object
) -> None:
    settings = {
        "artifact": artifact_dir,
        "redis_url": cluster_url(redis_cluster),
        "redis_socket_timeout_s": 2.0,
        "redis_deadline_s": 1.5,
        "redis_connect_timeout_s": 2.0,
        "redis_key_prefix": f"hsc:{uuid.uuid4().hex[:8]}:",
    }
    async with running_app(**settings) as (a, _), running_app(**settings) as (b, _):
        for trial in range(3):
            sid = (await a.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
            bodies = [
                {
                    "session_id": sid,
                    "request_id": f"t{trial}-c{i}",
                    "step": 0,
                    "state": {"features": UP},
                }
                for i in range(64)
            ]
            answers = await asyncio.gather(
                *(
                    (a if i % 2 else b).post("/v1/should_intervene", json=q)
                    for i, q in enumerate(bodies)
                )
            )
            assert {r.status_code for r in answers} == {200}
            js = [r.json() for r in answers]
            assert not any(j["degraded"] for j in js)
            assert sum(j["intervene"] for j in js) == 10
            assert sorted(j["remaining_budget"] for j in js if j["intervene"]) == list(range(10))
            assert (await a.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 0


@pytest.mark.asyncio
async def test_20_concurrent_copies_of_one_request_id_charge_once_and_match_bytes(
    redis_cluster: list[RedisProc], artifact_dir: object
) -> None:
    settings = {
        "artifact": artifact_dir,
        "redis_url": cluster_url(redis_cluster),
        "redis_socket_timeout_s": 2.0,
        "redis_deadline_s": 1.5,
        "redis_connect_timeout_s": 2.0,
        "redis_key_prefix": f"hsc:{uuid.uuid4().hex[:8]}:",
    }
    async with running_app(**settings) as (a, _), running_app(**settings) as (b, _):
        sid = (await a.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        q = {"session_id": sid, "request_id": "once", "step": 3, "state": {"features": UP}}
        answers = await asyncio.gather(
            *((a if i % 2 else b).post("/v1/should_intervene", json=q) for i in range(20))
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1  # byte for byte
        assert answers[0].json()["intervene"] is True
        assert (await b.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 9
