"""Chaos suite: a real redis-server (or 3-node cluster) the test owns, slowed and killed.

Each case counts what a budget owner cares about, from the answers the client received:

* phantom charges = units charged in Redis - ``intervene`` answers received (must be 0);
* the most ``intervene`` answers one session got from this process (fail-open: <= budget);
* 5xx answers (must be 0).

Faults: SIGSTOP (slow: connections are accepted and commands buffered, the service's
timeout fires first, then SIGCONT runs the buffered commands late), SIGKILL + restart
(dead; ``appendonly`` brings the data back), and one cluster node killed or stopped.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from tests.conftest import free_port
from tests.service.conftest import running_app
from tests.service.redis_procs import RedisProc, start_cluster

UP = [1.0, 0.0, 0.0, 0.0]  # the test helper intervenes here whenever the budget allows


class Tally:
    """Answers as the client received them."""

    def __init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.intervened: Counter[str] = Counter()  # session -> intervene answers received
        self.degraded = 0

    async def decide(
        self, c: httpx.AsyncClient, sid: str, rid: str, step: int = 0
    ) -> dict[str, Any] | None:
        body = {"session_id": sid, "request_id": rid, "step": step, "state": {"features": UP}}
        r = await c.post("/v1/should_intervene", json=body)
        self.status[r.status_code] += 1
        if r.status_code != 200:
            return None
        a: dict[str, Any] = r.json()
        self.intervened[sid] += int(a["intervene"])
        self.degraded += int(a["degraded"])
        return a

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.status.items() if code >= 500)

    def report(self, case: str, phantoms: int, budget: int) -> None:
        """One line of figures (``pytest -s`` shows them)."""
        print(  # noqa: T201 - the suite's figures, read with -s
            f"\nchaos {case}: answers {sum(self.status.values())} {dict(self.status)}, "
            f"degraded {self.degraded}, phantom charges {phantoms}, most intervene answers "
            f"per session {max(self.intervened.values())} (budget {budget}), "
            f"5xx {self.server_errors}"
        )


async def _settled(app: Any) -> None:
    """Let queued degraded answers reach the store (the service settles them itself)."""
    store = app.state.svc.store
    if hasattr(store, "drain"):
        assert await store.drain(10.0) == 0
    else:  # the code before settlement existed: nothing to wait for
        await asyncio.sleep(0.6)


async def _phantoms(c: httpx.AsyncClient, tally: Tally, budgets: dict[str, int]) -> int:
    charged = 0
    for sid, budget in budgets.items():
        r = await c.get(f"/v1/sessions/{sid}")
        assert r.status_code == 200, r.text
        charged += budget - r.json()["remaining_budget"]
    return charged - sum(tally.intervened[sid] for sid in budgets)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Any:
    proc = RedisProc(
        free_port(), tmp_path / "redis", ["--appendonly", "yes", "--appendfsync", "always"]
    ).start()
    yield proc
    proc.kill()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_slow_redis_never_charges_for_an_answer_the_client_did_not_receive(
    redis_proc: RedisProc, artifact_dir: Path
) -> None:
    """Row 1: SIGSTOP 0.8 s around decisions; after SIGCONT no charge without an intervene."""
    tally = Tally()
    async with running_app(artifact=artifact_dir, redis_url=redis_proc.url) as (c, app):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        assert (await tally.decide(c, sid, "warm"))["intervene"]  # type: ignore[index]
        firsts: dict[str, bytes] = {}
        for trial in range(4):  # one request per stall (as reported), then 6 at once
            redis_proc.stop()
            t0 = time.monotonic()
            rids = [f"slow-{trial}-{i}" for i in range(1 if trial < 2 else 6)]
            answers = await asyncio.gather(
                *(
                    c.post(
                        "/v1/should_intervene",
                        json={
                            "session_id": sid,
                            "request_id": rid,
                            "step": 1,
                            "state": {"features": UP},
                        },
                    )
                    for rid in rids
                )
            )
            waited = time.monotonic() - t0
            await asyncio.sleep(max(0.8 - waited, 0.0))
            redis_proc.cont()
            for rid, r in zip(rids, answers, strict=True):
                tally.status[r.status_code] += 1
                a = r.json()
                tally.degraded += int(a["degraded"])
                assert a["degraded"] and a["reason"] == "fail_closed" and not a["intervene"], a
                firsts[rid] = r.content
            assert waited < 0.6, waited  # answered while Redis was still stopped
            await _settled(app)
            await asyncio.sleep(0.6)  # past the cooldown
        phantoms = await _phantoms(c, tally, {sid: 10})
        tally.report("slow redis, fail closed", phantoms, 10)
        assert phantoms == 0
        for rid, first in firsts.items():  # a retry replays the answer received, byte for byte
            body = {"session_id": sid, "request_id": rid, "step": 1, "state": {"features": UP}}
            assert (await c.post("/v1/should_intervene", json=body)).content == first
        assert (await tally.decide(c, sid, "after"))["remaining_budget"] == 8  # type: ignore[index]
    assert tally.server_errors == 0


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["slow", "dead"])
async def test_fail_open_grants_at_most_the_budget_per_session_from_one_process(
    fault: str, redis_proc: RedisProc, artifact_dir: Path
) -> None:
    """Row 4: fail_mode open, budget-3 sessions, Redis stopped or killed 1.5 s under 8 clients."""
    tally = Tally()
    budget, clients = 3, 8
    async with running_app(
        artifact=artifact_dir, redis_url=redis_proc.url, fail_mode="open", redis_cooldown_s=0.2
    ) as (c, app):
        sids = [
            (await c.post("/v1/sessions", json={"budget": budget})).json()["session_id"]
            for _ in range(clients)
        ]
        for sid in sids:
            await tally.decide(c, sid, "warm")  # a real grant: this process knows remaining 2
        stop = asyncio.Event()

        async def client(sid: str) -> None:
            n = 0
            while not stop.is_set():
                await tally.decide(c, sid, f"{sid}-{n}", step=n % 20)
                n += 1
                await asyncio.sleep(0.02)

        if fault == "slow":
            redis_proc.stop()
        else:
            redis_proc.kill()
        tasks = [asyncio.create_task(client(sid)) for sid in sids]
        await asyncio.sleep(1.5)
        if fault == "slow":
            redis_proc.cont()
        else:
            redis_proc.start()
        await asyncio.sleep(1.0)  # the clients keep deciding after recovery
        stop.set()
        await asyncio.gather(*tasks)
        await _settled(app)
        most = max(tally.intervened[sid] for sid in sids)
        phantoms = await _phantoms(c, tally, dict.fromkeys(sids, budget))
        tally.report(f"{fault} redis, fail open", phantoms, budget)
        assert tally.degraded > 0  # the outage was seen
        assert most <= budget, dict(tally.intervened)
        assert phantoms == 0
    assert tally.server_errors == 0


def _node_of(nodes: list[RedisProc], key: str) -> int:
    for i, node in enumerate(nodes):
        try:
            if redis_sync.Redis(port=node.port).exists(key):
                return i
        except redis_sync.exceptions.ResponseError:  # MOVED: another node owns the slot
            continue
    raise AssertionError(f"{key} is on no node")


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["stop", "kill"])
async def test_a_failing_cluster_node_degrades_only_its_sessions(
    fault: str, tmp_path: Path, artifact_dir: Path
) -> None:
    """One of three masters stopped or killed: its sessions degrade, the others do not."""
    nodes = start_cluster(tmp_path / "cluster")
    tally = Tally()
    prefix = f"hsx:{uuid.uuid4().hex[:6]}:"
    try:
        async with running_app(
            artifact=artifact_dir,
            redis_url=f"redis+cluster://127.0.0.1:{nodes[0].port}",
            redis_key_prefix=prefix,
            redis_connect_timeout_s=0.5,
            redis_cooldown_s=0.2,
        ) as (c, app):
            sids = [
                (await c.post("/v1/sessions", json={"budget": 50})).json()["session_id"]
                for _ in range(12)
            ]
            where = {sid: _node_of(nodes, f"{prefix}{{public:{sid}}}") for sid in sids}
            victim = where[sids[0]]
            for sid in sids:
                await tally.decide(c, sid, "warm")
            (nodes[victim].stop if fault == "stop" else nodes[victim].kill)()
            t0 = time.monotonic()
            seen: dict[str, list[bool]] = {sid: [] for sid in sids}
            n = 0
            while time.monotonic() - t0 < 1.5:
                for sid in sids:
                    a = await tally.decide(c, sid, f"out-{n}", step=n % 20)
                    if a is not None:
                        seen[sid].append(a["degraded"])
                n += 1
            if fault == "stop":
                nodes[victim].cont()
            else:
                nodes[victim].start()
            for sid in sids:
                if where[sid] == victim:
                    assert all(seen[sid]), seen[sid]  # never decided on a node that is down
                else:
                    assert seen[sid] and not any(seen[sid][1:]), seen[sid]  # at most one blip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the restarted node serves its slots again
                await asyncio.sleep(0.3)
                if not (await tally.decide(c, sids[0], f"back-{time.monotonic()}"))["degraded"]:  # type: ignore[index]
                    break
            else:
                raise AssertionError("the failed node's sessions did not recover")
            await _settled(app)
            phantoms = await _phantoms(c, tally, dict.fromkeys(sids, 50))
            tally.report(f"cluster node {fault}, fail closed", phantoms, 50)
            assert phantoms == 0
        assert tally.server_errors == 0
    finally:
        for node in nodes:
            node.kill()
