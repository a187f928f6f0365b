"""The loop of issue 12 item 4, small: real service subprocess, real Redis, SDK only.

An explore-only service (no artifact) serves exploration sessions of the MiniGrid DoorKey
plug-in agent; ``examples/loop.py`` exports the decision log, trains from it, swaps the
artifact in and reloads it through the SDK, then plays helper, never and matched-random
sessions. The full-size run (N = 1000 per policy) is in docs/your-agent.md.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from helpseek_client import HelpSeekClient
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("minigrid")


def _loop_module() -> object:
    spec = importlib.util.spec_from_file_location(
        "helpseek_example_loop", REPO / "examples/loop.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_loop_explore_export_train_reload_serve(
    serve: Callable[..., str], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    log, served = tmp_path / "decisions.jsonl", tmp_path / "served"
    base = serve(
        free_port(),
        allow_no_artifact="true",
        artifact=served,
        decision_log=log,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
    )
    loop = _loop_module()
    with HelpSeekClient(base, timeout=30.0) as client:
        report = loop.run_loop(  # type: ignore[attr-defined]
            client,
            env=loop.DOORKEY,
            log=log,
            serve_artifact=served,  # type: ignore[attr-defined]
            work=tmp_path / "work",
            explore_episodes=40,
            explore_budget=5,
            episodes=12,
            budget=2,
            train_args=["--no-offline-rl", "--no-lagrangian"],
        )
        model = client.model()
    assert report["reloaded"]["previous_version"] == "none"
    assert model.model_version == report["reloaded"]["model_version"] != "none"
    assert model.raw["feature_names"][:3] == ["t_frac", "x", "y"]  # the plug-in's features
    cells = report["policies"]
    assert {c["episodes"] for c in cells.values()} == {12}
    assert cells["never"]["interventions_per_episode"] == 0.0
    assert cells["helper"]["model_version"] == model.model_version
    assert cells["random_matched"]["model_version"].startswith("explore:")
    for c in cells.values():
        lo, hi = c["wilson95"]
        assert 0.0 <= lo <= c["success"] <= hi <= 1.0
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    explore = [r for r in rows if r["record"] == "decision" and r["reason"] == "explore"]
    swept = {i / 10 for i in range(11)}  # 40 sessions cycle the default schedule 3.6 times
    assert swept <= {r["behavior_p"] for r in explore}
    assert all(r["agent_state_key"] for r in explore)  # the adapter's own keys were sent
    helper = [r for r in rows if r["record"] == "decision" and r["explore_p"] is None]
    assert {r["model_version"] for r in helper} == {model.model_version}
    assert "helper" in {r["reason"] for r in helper}


def test_wilson_matches_the_closed_form() -> None:
    loop = _loop_module()
    lo, hi = loop.wilson(50, 100)  # type: ignore[attr-defined]
    # independent reference: Wilson (1927) for p = 0.5, n = 100, z = 1.96
    assert lo == pytest.approx(0.40383, abs=1e-4) and hi == pytest.approx(0.59617, abs=1e-4)
