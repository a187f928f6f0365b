"""Redis stopped mid-test: the configured fail mode answers (degraded, counted, never a 500),
then the service recovers by itself once Redis is back. Uses a private redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import free_port, start_redis_server
from tests.service.conftest import running_app

UP = [1.0, 0.0, 0.0, 0.0]


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_redis_down_then_back(mode: str, artifact_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis_server(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        async with running_app(
            artifact=artifact_dir, redis_url=url, fail_mode=mode, redis_cooldown_s=0.2
        ) as (c, app):
            m = app.state.svc.metrics.registry
            sid = (await c.post("/v1/sessions", json={"budget": 5})).json()["session_id"]
            body = {"session_id": sid, "step": 0, "state": {"features": UP}}
            ok = (await c.post("/v1/should_intervene", json=body)).json()
            assert ok["intervene"] and not ok["degraded"] and ok["remaining_budget"] == 4

            redis.kill()
            redis.wait(5)
            answers = [await c.post("/v1/should_intervene", json=body) for _ in range(3)]
            assert {r.status_code for r in answers} == {200}
            for n, r in enumerate(answers):
                a = r.json()
                assert a["degraded"] is True and a["reason"] == f"fail_{mode}"
                assert a["intervene"] is (mode == "open")
                # last known budget 4; fail-open spends it from this process's ledger
                assert a["remaining_budget"] == (3 - n if mode == "open" else 4)
            assert m.get_sample_value("helpseek_degraded_total", {"mode": mode}) == 3
            assert (
                m.get_sample_value("helpseek_budget_store_errors_total", {"op": "try_consume"}) >= 1
            )
            assert (
                m.get_sample_value(
                    "helpseek_decisions_total",
                    {
                        "outcome": "intervene" if mode == "open" else "proceed",
                        "reason": f"fail_{mode}",
                        "model_version": "test-v1",
                    },
                )
                == 3
            )
            r = await c.post("/v1/sessions", json={"budget": 1})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            ready = await c.get("/readyz")
            assert ready.status_code == 200 and ready.json()["budget_store_ok"] is False
            # stateless decisions never need Redis
            r = await c.post(
                "/v1/should_intervene",
                json={"step": 0, "state": {"features": UP}, "remaining_budget": 1},
            )
            assert r.json()["degraded"] is False and r.json()["intervene"] is True

            redis = start_redis_server(port, tmp_path)  # empty: no persistence in this test
            await asyncio.sleep(0.3)  # past the cooldown
            r = await c.post("/v1/sessions", json={"budget": 2})
            assert r.status_code == 201, r.text
            sid2 = r.json()["session_id"]
            a = (await c.post("/v1/should_intervene", json={**body, "session_id": sid2})).json()
            assert a["degraded"] is False and a["intervene"] is True and a["remaining_budget"] == 1
            assert (
                await c.post("/v1/should_intervene", json=body)
            ).status_code == 404  # lost with the data
            assert (await c.get("/readyz")).json()["budget_store_ok"] is True
    finally:
        redis.kill()
        redis.wait(5)
