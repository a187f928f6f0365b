"""A ``kind: "text"`` artifact served by create_app: state.text in, micro-batched, off the loop.

The text model is the real ``embed`` backend (MiniLM) with heads trained on the toy task
(intervening is optimal iff the door is locked and budget remains).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_text import (
    HeadConfig,
    TextModelConfig,
    load_scorer,
    save_text_model,
    train_text_model,
)
from helpseek_text.toy import toy_task
from tests.conftest import write_test_artifact
from tests.service.conftest import running_app

LOCKED = "Step 3. The agent is in the purple attic carrying a lamp. The door to the goal is locked."
OPEN = "Step 3. The agent is in the purple attic carrying a lamp. The door to the goal is open."


@pytest.fixture(scope="module")
def text_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    task = toy_task(rng, n_train=160, n_test=10, cmax=2)
    scorer = train_text_model(
        TextModelConfig(backend="embed"),
        rng,
        prm=task.train_prm,
        helper=task.train_helper,
        head=HeadConfig(epochs=150),
        cmax=2,
        horizon=30,
    )
    out = tmp_path_factory.mktemp("text-artifact")
    files = save_text_model(out, scorer)
    manifest = {
        "artifact_id": "text-toy-v1",
        "created_at": "2026-11-25T00:00:00Z",
        "kind": "text",
        "feature_schema": {"names": [], "dim": 0},
        "cmax": 2,
        "horizon": 30,
        "k": 1,
        "cost": 1,
        "helper": {"threshold": 0.5},
    }
    return write_artifact(out, manifest, {}, extra_files=files)


def _ask(text: str, budget: int = 1, **extra: Any) -> dict[str, Any]:
    return {"step": 3, "state": {"text": text}, "remaining_budget": budget, **extra}


@pytest.mark.asyncio
async def test_text_artifact_answers_state_text(
    text_artifact: Path, store_settings: dict[str, Any]
) -> None:
    direct = load_scorer(load_artifact(text_artifact)).text_scorer
    async with running_app(artifact=text_artifact, **store_settings) as (c, app):
        model = (await c.get("/v1/model")).json()
        assert model["kind"] == "text" and model["feature_dim"] == 0
        r = await c.post("/v1/sessions", json={"budget": 1, "horizon": 30})
        sid = r.json()["session_id"]
        answers = []
        for step, text in enumerate([OPEN, LOCKED, LOCKED]):
            r = await c.post(
                "/v1/should_intervene",
                json={"session_id": sid, "step": step, "state": {"text": text}},
            )
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert [a["intervene"] for a in answers] == [False, True, False]
        assert [a["reason"] for a in answers] == ["helper", "helper", "budget_exhausted"]
        assert answers[0]["model_version"] == "text-toy-v1"
        # the served probability is the text scorer's at the budget the session held
        want = direct.decide([LOCKED], [1], [30 - 1])[0]
        assert answers[1]["probability"] == pytest.approx(want.probability, abs=1e-6)
        assert answers[1]["novel"] == want.novel
        # stateless mode
        r = await c.post("/v1/should_intervene", json=_ask(LOCKED, budget=2))
        assert r.status_code == 200 and r.json()["intervene"] is True
        assert r.json()["remaining_budget"] == 1
        batcher = app.state.svc.holder.scorer.batcher
        assert batcher is not None and batcher.stats.items >= 4


@pytest.mark.asyncio
async def test_kind_mismatch_is_a_422_naming_the_field(text_artifact: Path, tmp_path: Path) -> None:
    async with running_app(artifact=text_artifact) as (c, _):
        r = await c.post(
            "/v1/should_intervene",
            json={"step": 0, "state": {"features": [0.0]}, "remaining_budget": 1},
        )
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "state", "features"]
        assert "state.text" in r.json()["detail"][0]["msg"]
        r = await c.post("/v1/should_intervene", json=_ask("   "))
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "state", "text"]
    features = write_test_artifact(tmp_path / "features")
    async with running_app(artifact=features) as (c, _):
        r = await c.post("/v1/should_intervene", json=_ask(LOCKED))
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "state", "text"]


class SlowEncoder:
    """Fault injection: the real encoder behind a fixed delay per forward pass."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.family, self.dim = inner.family, inner.dim
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        time.sleep(self.delay_s)
        return self.inner.encode(texts)


@pytest.mark.asyncio
async def test_slow_forward_pass_blocks_neither_healthz_nor_other_sessions(
    text_artifact: Path,
) -> None:
    delay, n = 0.5, 8
    async with running_app(artifact=text_artifact) as (c, app):
        scorer = app.state.svc.holder.scorer
        slow = SlowEncoder(scorer.text_scorer.encoder, delay)
        scorer.text_scorer.encoder = slow
        t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(
                c.post("/v1/should_intervene", json=_ask(LOCKED if i % 2 else OPEN))
            )
            for i in range(n)
        ]
        await asyncio.sleep(0.05)  # the first batch is now inside its forward pass
        health = []
        for _ in range(5):
            h0 = time.perf_counter()
            r = await c.get("/healthz")
            health.append(time.perf_counter() - h0)
            assert r.status_code == 200
        assert not all(t.done() for t in tasks), "decisions finished before the health checks"
        answers = await asyncio.gather(*tasks)
        total = time.perf_counter() - t0
    assert all(r.status_code == 200 for r in answers)
    assert [r.json()["intervene"] for r in answers] == [bool(i % 2) for i in range(n)]
    # Order, not speed: the 5 health checks finished while the decisions were still inside
    # their forward pass (asserted above). The time bound is one whole pass (0.5 s), not a
    # tight figure: on a shared 2-core machine a check can be slow for unrelated reasons, but
    # it must never wait for the forward pass itself.
    assert max(health) < delay, health
    # concurrent sessions share forward passes: far fewer than one pass per request (a count)
    assert slow.calls <= 3, (slow.calls, total)
    assert scorer.batcher.stats.largest_batch >= 2


@pytest.mark.asyncio
async def test_reload_keeps_serving_text(text_artifact: Path) -> None:
    async with running_app(artifact=text_artifact) as (c, app):
        old = app.state.svc.holder.scorer
        r = await c.post("/v1/should_intervene", json=_ask(LOCKED))
        assert r.status_code == 200
        r = await c.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert old.batcher.closed  # the swapped-out scorer's worker thread is stopped
        new = app.state.svc.holder.scorer
        assert new is not old and new.text_scorer.encoder is old.text_scorer.encoder  # cached
        r = await c.post("/v1/should_intervene", json=_ask(LOCKED))
        assert r.status_code == 200 and r.json()["intervene"] is True
