"""More budget must never mean worse decisions: the helper trained for Cmax, asked up to 2 x Cmax.

A small real pipeline run per environment (Taxi wall-blind, FrozenLake 4x4 slippery), then a
live evaluation at C = 0 .. 2 x Cmax on held-out seeds. Two things are checked:

- the encoding clips the budget input to the trained Cmax, so a helper asked with c > Cmax
  scores every state exactly as with c = Cmax (no input it never saw);
- live success does not fall as C grows, cell to cell, beyond the two cells' 99.9 %
  intervals (the report's own self-check), and C = 2 x Cmax is no worse than C = Cmax.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_core.helper import Helper
from training.config import PRMConfig
from training.evaluate import EvalConfig
from training.helper_train import HelperConfig
from training.pipeline import ModelConfig, TrainConfig, main

CMAX = 3
ENVS = {
    "taxi": "Taxi-v4:weak=wallblind,H=25",
    "frozenlake": "FrozenLake-v1:map_name=4x4,is_slippery=true,H=40,weak=eps,eps=0.5",
}


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(ENVS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"mono-{request.param}") / "artifact"
    cfg = TrainConfig(
        env=ENVS[request.param],
        out=out,
        cmax=CMAX,
        train_seeds=tuple(range(40)),
        test_seeds=tuple(range(1000, 1004)),
        episodes_per_seed=22,
        workers=1,
        prm=PRMConfig(log=Path("."), out=Path("."), epochs=6),
        model=ModelConfig(lagrangian=False, offline_rl=False),
        helper=HelperConfig(epochs=20),
        evaluation=EvalConfig(
            budgets=tuple(range(2 * CMAX + 1)), episodes=500, n_tasks=500, search_episodes=100
        ),
        progress=False,
    )
    return main(cfg)


def test_budget_input_is_clipped_to_the_trained_cmax(run: Path) -> None:
    helper = Helper.from_artifact(load_artifact(run))
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["cmax"] == CMAX
    rng = np.random.default_rng(0)
    f = rng.normal(size=(64, helper.stats.mean.shape[0])) * helper.stats.std + helper.stats.mean
    left = rng.integers(1, helper.horizon, 64)
    at_cmax = helper.probability(f, np.full(64, CMAX), left)
    for c in range(CMAX + 1, 2 * CMAX + 1):
        assert np.array_equal(helper.probability(f, np.full(64, c), left), at_cmax)
    # ... and the budget input does matter below Cmax (the clip is not the only behaviour)
    assert not np.array_equal(helper.probability(f, np.full(64, 1), left), at_cmax)


def test_helper_success_non_decreasing_up_to_twice_cmax(run: Path) -> None:
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    checks = {c["name"]: c for c in metrics["self_checks"]}
    mono = checks["helper success non-decreasing in C"]
    assert mono["ok"] is True, mono["detail"]
    cells = {c["budget"]: c for c in metrics["policies"]["helper"]["cells"]}
    assert max(cells) == 2 * CMAX
    top, base = cells[2 * CMAX], cells[CMAX]
    se = math.hypot(
        *(math.sqrt(c["success"] * (1 - c["success"]) / c["episodes"]) for c in (top, base))
    )
    assert top["success"] >= base["success"] - 3.29 * se
    assert top["violations"] == 0 and top["interventions_per_episode"] <= 2 * CMAX
    assert cells[CMAX]["success"] > cells[0]["success"]  # help helps: the test can tell
