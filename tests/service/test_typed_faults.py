"""A typed model while Redis is stopped (SIGSTOP, slow) then resumed: fail closed, then the
degraded answer is settled, so a retry replays it byte for byte and nothing was charged."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import free_port, start_redis_server
from tests.service.conftest import running_app

UP = [1.0, 0.0, 0.0, 0.0]


@pytest.mark.asyncio
async def test_typed_answer_fails_closed_while_redis_is_stopped_then_replays(
    typed_artifact_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_redis_server(port, tmp_path)
    try:
        async with running_app(
            artifact=typed_artifact_dir,
            redis_url=f"redis://127.0.0.1:{port}/0",
            fail_mode="open",
            redis_cooldown_s=0.2,
            redis_socket_timeout_s=0.3,
        ) as (c, app):
            r = await c.post("/v1/sessions", json={"budgets": {"a": 3, "b": 1}})
            sid = r.json()["session_id"]
            body = {"session_id": sid, "step": 0, "state": {"features": UP}}
            ok = (await c.post("/v1/should_intervene", json={**body, "request_id": "r0"})).json()
            assert (ok["type"], ok["remaining_budgets"]) == ("b", {"a": 3, "b": 0})
            os.kill(redis.pid, signal.SIGSTOP)
            try:
                first = await c.post("/v1/should_intervene", json={**body, "request_id": "r1"})
                a = first.json()
                assert first.status_code == 200 and a["degraded"] and a["reason"] == "fail_closed"
                assert a["intervene"] is False and a["type"] is None  # typed: always closed
                assert a["remaining_budgets"] == {"a": 3, "b": 0}
            finally:
                os.kill(redis.pid, signal.SIGCONT)
            svc = app.state.svc
            assert await svc.store.drain(5.0) == 0
            await asyncio.sleep(0.25)  # past the cooldown
            again = await c.post("/v1/should_intervene", json={**body, "request_id": "r1"})
            assert again.content == first.content
            st = (await c.get(f"/v1/sessions/{sid}")).json()
            assert st["remaining_budgets"] == {
                "a": 3,
                "b": 0,
            }  # the stopped request charged nothing
            nxt = (await c.post("/v1/should_intervene", json={**body, "request_id": "r2"})).json()
            assert (nxt["type"], nxt["degraded"], nxt["remaining_budgets"]) == (
                "a",
                False,
                {"a": 2, "b": 0},
            )
    finally:
        redis.kill()
        redis.wait(5)
