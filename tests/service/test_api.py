"""The HTTP contract through create_app (in-process ASGI), over both budget stores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_core.helper import Helper
from tests.conftest import write_test_artifact
from tests.service.conftest import running_app

pytestmark = pytest.mark.asyncio
UP = [1.0, 0.0, 0.0, 0.0]  # the test helper intervenes (feature 0 above its mean)
DOWN = [-1.0, 0.0, 0.0, 0.0]  # ... and proceeds here


def sample(app: Any, name: str, **labels: str) -> float:
    value = app.state.svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_session_decisions_outcome(
    artifact_dir: Path, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    async with running_app(artifact=artifact_dir, decision_log=str(log), **store_settings) as (
        c,
        app,
    ):
        r = await c.post(
            "/v1/sessions", json={"budget": 2, "horizon": 20, "metadata": {"task": "t1"}}
        )
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        assert r.json()["budget"] == 2 and r.json()["expires_at"] > 0
        answers = []
        for step, state in enumerate([DOWN, UP, UP, UP]):
            r = await c.post(
                "/v1/should_intervene",
                json={"session_id": sid, "step": step, "state": {"features": state}},
            )
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert [a["intervene"] for a in answers] == [False, True, True, False]
        assert [a["remaining_budget"] for a in answers] == [2, 1, 0, 0]
        assert [a["reason"] for a in answers] == ["helper", "helper", "helper", "budget_exhausted"]
        assert all(a["model_version"] == "test-v1" and a["degraded"] is False for a in answers)
        status = (await c.get(f"/v1/sessions/{sid}")).json()
        assert (
            status["remaining_budget"] == 0
            and status["horizon"] == 20
            and status["metadata"] == {"task": "t1"}
        )
        r = await c.post(f"/v1/sessions/{sid}/outcome", json={"success": True, "steps": 4})
        assert r.status_code == 200 and r.json()["budget_used"] == 2
        assert (
            await c.post(f"/v1/sessions/{sid}/outcome", json={"success": True, "steps": 4})
        ).status_code == 409
        r = await c.post(
            "/v1/should_intervene", json={"session_id": sid, "step": 5, "state": {"features": UP}}
        )
        assert r.status_code == 409
        assert (
            sample(
                app,
                "helpseek_decisions_total",
                outcome="intervene",
                reason="helper",
                model_version="test-v1",
            )
            == 2
        )
        assert (
            sample(
                app,
                "helpseek_decisions_total",
                outcome="proceed",
                reason="budget_exhausted",
                model_version="test-v1",
            )
            == 1
        )
        assert sample(app, "helpseek_interventions_granted_total", model_version="test-v1") == 2
        assert sample(app, "helpseek_interventions_refused_total", reason="budget") == 1
        assert sample(app, "helpseek_sessions_started_total") == 1
        assert sample(app, "helpseek_sessions_finished_total", outcome="success") == 1
        assert sample(app, "helpseek_model_info", model_version="test-v1") == 1
        assert sample(
            app, "helpseek_model_target_intervention_rate", model_version="test-v1"
        ) == pytest.approx(0.15)
        assert (
            sample(app, "helpseek_request_duration_seconds_count", route="/v1/should_intervene")
            == 5
        )
        assert sample(app, "helpseek_budget_store_duration_seconds_count", op="try_consume") == 5
        text = (await c.get("/metrics")).text
        assert "helpseek_decisions_total{" in text and sid not in text
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["record"] for r in rows] == ["decision"] * 4 + ["outcome"]
    d = rows[1]
    assert d["episode_id"] == sid and d["t"] == 1 and d["features"] == UP and d["action"] == 1
    assert (
        d["cost"] == 1
        and d["remaining_before"] == 2
        and d["remaining_after"] == 1
        and d["steps_left"] == 19
    )
    assert (
        rows[3]["action"] == 0 and rows[3]["cost"] == 0 and rows[3]["reason"] == "budget_exhausted"
    )
    assert rows[4] == {
        **rows[4],
        "episode_id": sid,
        "success": True,
        "steps": 4,
        "budget": 2,
        "remaining": 0,
    }
    assert (
        rows[0]["state_key"] != rows[1]["state_key"]
        and rows[1]["state_key"] == rows[2]["state_key"]
    )


async def test_decisions_match_core_helper(artifact_dir: Path) -> None:
    helper = Helper.from_artifact(load_artifact(artifact_dir))
    rng = np.random.default_rng(1)
    async with running_app(artifact=artifact_dir) as (c, _):
        for _ in range(20):
            f = rng.normal(size=4).round(3).tolist()
            c_, step = int(rng.integers(0, 4)), int(rng.integers(0, 25))
            r = (
                await c.post(
                    "/should_intervene",
                    json={"step": step, "state": {"features": f}, "remaining_budget": c_},
                )
            ).json()
            d = helper.decide(f, c_, 25 - step)
            assert (r["intervene"], r["reason"], r["novel"]) == (d.intervene, d.reason, d.novel)
            assert r["probability"] == pytest.approx(d.probability) and r[
                "novelty_score"
            ] == pytest.approx(d.novelty_score)


async def test_novel_state_is_flagged_and_counted(artifact_dir: Path) -> None:
    async with running_app(artifact=artifact_dir) as (c, app):
        r = (
            await c.post(
                "/v1/should_intervene",
                json={"step": 0, "state": {"features": [0, 50, 0, 0]}, "remaining_budget": 1},
            )
        ).json()
        assert r["novel"] is True and r["novelty_score"] > 10
        r2 = (
            await c.post(
                "/v1/should_intervene",
                json={"step": 0, "state": {"features": [0.1, 0, 0, 0]}, "remaining_budget": 1},
            )
        ).json()
        assert r2["novel"] is False
        assert sample(app, "helpseek_novel_states_total", model_version="test-v1") == 1


async def test_retries_never_double_charge(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=artifact_dir, **store_settings) as (c, app):
        sid = (await c.post("/v1/sessions", json={"budget": 3})).json()["session_id"]
        body = {"session_id": sid, "step": 1, "state": {"features": UP}}
        first = (
            await c.post("/v1/should_intervene", json=body, headers={"Idempotency-Key": "k1"})
        ).json()
        for _ in range(3):
            again = (await c.post("/v1/should_intervene", json={**body, "request_id": "k1"})).json()
            assert again == first
        assert first["intervene"] and first["remaining_budget"] == 2 and first["request_id"] == "k1"
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 2
        assert (
            sample(
                app,
                "helpseek_decisions_total",
                outcome="intervene",
                reason="helper",
                model_version="test-v1",
            )
            == 1
        )
        r = await c.post(
            "/v1/should_intervene",
            json={**body, "request_id": "a"},
            headers={"Idempotency-Key": "b"},
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
            "header",
            "idempotency-key",
        ]


async def test_64_concurrent_requests_budget_10(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=artifact_dir, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        rs = await asyncio.gather(
            *(
                c.post(
                    "/v1/should_intervene",
                    json={
                        "session_id": sid,
                        "request_id": f"r{i}",
                        "step": 1,
                        "state": {"features": UP},
                    },
                )
                for i in range(64)
            )
        )
        assert {r.status_code for r in rs} == {200}
        assert sum(r.json()["intervene"] for r in rs) == 10
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 0


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"step": 0, "state": {"features": [1, 2, 3]}, "remaining_budget": 1},
            ["body", "state", "features"],
        ),
        (
            {"step": 0, "state": {"features": UP}, "remaining_budget": 1, "extra": 1},
            ["body", "extra"],
        ),
        (
            {"step": 0, "state": {"features": UP, "bogus": 1}, "remaining_budget": 1},
            ["body", "state", "bogus"],
        ),
        (
            {"step": 0, "state": {"features": UP}, "remaining_budget": -1},
            ["body", "remaining_budget"],
        ),
        (
            {"step": 0, "state": {"features": UP}, "remaining_budget": 1.5},
            ["body", "remaining_budget"],
        ),
        (
            {"step": 0, "state": {"features": UP}, "remaining_budget": "2"},
            ["body", "remaining_budget"],
        ),
        ({"step": -1, "state": {"features": UP}, "remaining_budget": 1}, ["body", "step"]),
        ({"step": 0, "state": {"features": UP}}, ["body", "remaining_budget"]),
        ({"step": 0, "state": {"text": "hello"}, "remaining_budget": 1}, ["body", "state", "text"]),
        ({"step": 0, "state": {}, "remaining_budget": 1}, ["body", "state"]),
        ({"step": 0, "remaining_budget": 1}, ["body", "state"]),
    ],
)
async def test_validation_errors_name_the_field(
    artifact_dir: Path, body: dict[str, Any], loc: list[str]
) -> None:
    async with running_app(artifact=artifact_dir) as (c, _):
        r = await c.post("/v1/should_intervene", json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert any(d["loc"][: len(loc)] == loc for d in detail), detail
        assert all({"loc", "msg", "type"} <= set(d) for d in detail)


async def test_session_budget_validation(artifact_dir: Path) -> None:
    async with running_app(artifact=artifact_dir) as (c, _):
        for bad in (
            {"budget": -1},
            {"budget": 2.5},
            {"budget": True},
            {"budget": 1, "ttl_s": 0},
            {"budget": 1, "x": 1},
            {},
        ):
            r = await c.post("/v1/sessions", json=bad)
            assert r.status_code == 422, (bad, r.text)
        assert (await c.post("/v1/sessions", json={"budget": 0})).status_code == 201
        r = await c.post(
            "/v1/should_intervene",
            json={"session_id": "nope", "step": 0, "state": {"features": UP}},
        )
        assert r.status_code == 404


async def test_body_size_limit(artifact_dir: Path) -> None:
    async with running_app(artifact=artifact_dir, max_body_bytes=1024) as (c, _):
        big = {
            "step": 0,
            "state": {"features": UP},
            "remaining_budget": 1,
            "request_id": "x" * 2000,
        }
        r = await c.post("/v1/should_intervene", json=big)
        assert r.status_code == 413 and "1024" in r.json()["detail"]

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(4):
                yield b" " * 400

        r = await c.post(
            "/v1/should_intervene", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413


async def test_auth_and_tenant_isolation(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(
        artifact=artifact_dir, api_keys=["alpha-key", "beta-key"], **store_settings
    ) as (c, _):
        assert (await c.post("/v1/sessions", json={"budget": 1})).status_code == 401
        assert (
            await c.post("/v1/sessions", json={"budget": 1}, headers={"X-API-Key": "wrong"})
        ).status_code == 401
        assert (await c.get("/v1/model")).status_code == 401
        assert (await c.get("/healthz")).status_code == 200 and (
            await c.get("/metrics")
        ).status_code == 200
        a = {"Authorization": "Bearer alpha-key"}
        b = {"X-API-Key": "beta-key"}
        sid = (await c.post("/v1/sessions", json={"budget": 1}, headers=a)).json()["session_id"]
        body = {"session_id": sid, "step": 0, "state": {"features": UP}}
        assert (await c.get(f"/v1/sessions/{sid}", headers=b)).status_code == 404
        assert (await c.post("/v1/should_intervene", json=body, headers=b)).status_code == 404
        assert (
            await c.post(
                f"/v1/sessions/{sid}/outcome", json={"success": False, "steps": 1}, headers=b
            )
        ).status_code == 404
        assert (await c.post("/v1/should_intervene", json=body)).status_code == 401
        r = await c.post("/v1/should_intervene", json=body, headers=a)
        assert r.status_code == 200 and r.json()["intervene"] is True
        assert (await c.get(f"/v1/sessions/{sid}", headers=a)).json()["remaining_budget"] == 0


async def test_reload_swaps_and_keeps_old_model_on_failure(tmp_path: Path) -> None:
    art = write_test_artifact(tmp_path / "art", artifact_id="v1")
    async with running_app(artifact=art) as (c, app):
        q = {"step": 0, "state": {"features": UP}, "remaining_budget": 1}
        assert (await c.post("/v1/should_intervene", json=q)).json()["intervene"] is True
        write_test_artifact(art, artifact_id="v2", gain=-4.0)  # now the helper never asks here
        r = await c.post("/admin/reload")
        assert r.status_code == 200 and r.json() == {
            "model_version": "v2",
            "previous_version": "v1",
            "reloaded": True,
            "workers_signalled": 0,
        }
        ans = (await c.post("/v1/should_intervene", json=q)).json()
        assert ans["model_version"] == "v2" and ans["intervene"] is False
        # corrupt the weights: hash mismatch -> refused, v2 keeps serving
        (art / "helper.npz").write_bytes(b"garbage")
        r = await c.post("/admin/reload")
        assert (
            r.status_code == 409
            and "helper.npz" in r.json()["detail"]
            and "v2" in r.json()["detail"]
        )
        assert (await c.post("/v1/should_intervene", json=q)).json()["model_version"] == "v2"
        # a valid artifact with another feature dimension is loadable, but requests follow it
        write_test_artifact(art, artifact_id="v3", dim=6)
        assert (await c.post("/admin/reload")).status_code == 200
        r = await c.post("/v1/should_intervene", json=q)
        assert r.status_code == 422 and "expected 6 features" in r.json()["detail"][0]["msg"]
        assert sample(app, "helpseek_model_reloads_total", result="ok") == 2
        assert sample(app, "helpseek_model_reloads_total", result="error") == 1
        assert sample(app, "helpseek_model_info", model_version="v3") == 1
        assert sample(app, "helpseek_model_info", model_version="v1") == 0
        assert (await c.get("/v1/model")).json()["feature_dim"] == 6


async def test_missing_manifest_refused(tmp_path: Path) -> None:
    art = write_test_artifact(tmp_path / "art", artifact_id="v1")
    async with running_app(artifact=art) as (c, _):
        (art / "manifest.json").unlink()
        r = await c.post("/admin/reload")
        assert r.status_code == 409 and "manifest.json" in r.json()["detail"]
        assert (await c.get("/readyz")).json()["model_version"] == "v1"
