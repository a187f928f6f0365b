"""``helpseek train-text`` end to end on tiny Taxi data -> text artifact -> the service answers.

The ``embed`` run is the fast path (~20 s). The ``lm`` run loads SmolLM2-135M (~15-20 s of the
total) and also drives the LLM base agent of BabyAI (training/envs/llm_agent.py), which shares
the loaded model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_text import HeadConfig, load_scorer
from training.envs import make_env
from training.text_pipeline import TextTrainConfig, main


def _tiny(out: Path, backend: str, rows: int = 150) -> TextTrainConfig:
    return TextTrainConfig(
        env="taxi",
        out=out,
        backend=backend,
        cmax=2,
        train_seeds=(0, 1, 2),
        test_seeds=(10_000,),
        episodes_per_seed=4,
        max_prm_rows=rows,
        max_helper_points=rows // 3,
        head=HeadConfig(epochs=30),
        progress=False,
    )


def _serve_one(artifact: Path, text: str) -> dict:
    import httpx

    from service.app import create_app
    from service.settings import Settings

    async def go() -> dict:
        app = create_app(Settings(artifact=artifact))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post(
                    "/v1/should_intervene",
                    json={"step": 0, "state": {"text": text}, "remaining_budget": 2},
                )
                assert r.status_code == 200, r.text
                return r.json()

    return asyncio.run(go())


def _check_artifact(out: Path, backend: str) -> None:
    art = load_artifact(out)
    m = art.manifest
    assert art.kind == "text" and art.feature_dim == 0
    assert {"text_model.json", "text_prm.npz", "text_helper.npz"} <= set(m["files"])
    assert m["text_model"]["backend"] == backend
    assert m["cmax"] == 2 and m["horizon"] == 25
    calib = m["prm_calibration"]["text_prm"]
    assert 0.0 <= calib["ece"] <= 1.0 and 0.0 <= calib["brier"] <= 1.0
    fit = m["helper"]["fit"]
    assert fit["rows"] == 2 * fit["points"] > 0
    assert m["dp"]["usage"][0] == 0 and m["dp"]["usage"][2] > 0  # the DP asks once it may
    # the DP's value never falls with more budget
    assert np.all(np.diff(m["dp"]["success"]) >= -1e-9)
    adapter = make_env("taxi")
    adapter.reset(5)
    text = adapter.text()
    scorer = load_scorer(art)
    direct = scorer.text_scorer.decide([text], [2], [25])[0]
    answer = _serve_one(out, text)
    assert answer["model_version"] == m["artifact_id"]
    assert answer["intervene"] == direct.intervene
    assert answer["probability"] == pytest.approx(direct.probability, abs=1e-6)


def test_embed_pipeline_end_to_end(tmp_path: Path) -> None:
    out = main(_tiny(tmp_path / "art", "embed"))
    _check_artifact(out, "embed")


@pytest.mark.slow
def test_lm_pipeline_and_llm_agent(tmp_path: Path) -> None:
    out = main(_tiny(tmp_path / "art", "lm", rows=60))
    _check_artifact(out, "lm")
    # the LLM base agent: valid actions, one forward pass per new situation, cached repeats
    adapter = make_env("BabyAI-GoToLocal-v0:weak=llm")
    adapter.reset(1)
    rng = np.random.default_rng(0)
    first = adapter.weak_action(rng)
    assert 0 <= first < 6 and adapter.scorer.forward_passes == 1
    z = adapter.scorer.scores(adapter.agent_text())
    assert z.shape == (6,) and np.isclose(np.exp(z).sum(), 1.0)
    adapter.weak_action(rng)
    assert adapter.scorer.forward_passes == 1  # same situation: cached
