"""End-to-end: the whole pipeline on a tiny environment, the artifact it writes, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_core.errors import ArtifactIntegrityError, ArtifactSchemaError
from helpseek_core.helper import Helper
from training import cli
from training.config import PRMConfig
from training.evaluate import ArtifactEvalConfig, EvalConfig
from training.evaluate import main as evaluate_main
from training.helper_train import HelperConfig
from training.offline_rl import OfflineRLConfig
from training.pipeline import TrainConfig, main

TINY_ENV = "FrozenLake-v1:map_name=4x4,is_slippery=true,H=30,weak=eps,eps=0.5"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "artifact"
    cfg = TrainConfig(
        env=TINY_ENV,
        out=out,
        cmax=3,
        train_seeds=tuple(range(12)),
        test_seeds=tuple(range(1000, 1004)),
        episodes_per_seed=22,
        workers=1,
        prm=PRMConfig(log=Path("."), out=Path("."), epochs=4),
        helper=HelperConfig(epochs=8),
        offline=OfflineRLConfig(steps=300),
        evaluation=EvalConfig(budgets=(0, 1, 2, 4), episodes=150, n_tasks=150),
        progress=False,
    )
    return main(cfg)


def test_pipeline_writes_a_loadable_artifact_and_report(run_dir: Path) -> None:
    art = load_artifact(run_dir)
    helper = Helper.from_artifact(art)
    m = art.manifest
    assert m["kind"] == "features" and m["cmax"] == 3 and m["k"] == 1 and m["cost"] == 1
    assert (
        m["feature_schema"]["dim"]
        == len(m["feature_schema"]["names"])
        == helper.stats.mean.shape[0]
    )
    rate = m["target_intervention_rate"]
    assert len(rate) == 4 and rate[0] == 0.0 and all(0 <= r <= 1 for r in rate)
    assert m["training_config"]["env"] == TINY_ENV
    assert set(m["files"]) == {"helper.npz", "prm.npz"}
    assert json.loads((run_dir / "config.json").read_text())["cmax"] == 3
    # The report: every policy ran at every budget, live, with no budget violation.
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    names = set(metrics["policies"])
    assert {
        "helper",
        "dp_oracle",
        "random",
        "prm_threshold",
        "gain_threshold",
        "offline_rl",
    } <= names
    for pol in metrics["policies"].values():
        assert [c["budget"] for c in pol["cells"]] == [0, 1, 2, 4]
        for c in pol["cells"]:
            assert c["violations"] == 0
            assert c["interventions_per_episode"] <= c["budget"]
            assert c["ci"][0] <= c["success"] <= c["ci"][1]
    assert metrics["oracle_kind"] == "exact"
    assert metrics["reference"]["always"]["success"] > metrics["reference"]["never"]["success"]
    for name in ("report.md", "success_vs_interventions.png", "success_vs_budget.png"):
        assert (run_dir / "report" / name).stat().st_size > 0
    # The helper decides like the artifact says: never beyond the budget.
    x = np.zeros(helper.stats.mean.shape[0])
    assert helper.decide(x, remaining=0, steps_left=10).intervene is False


def test_tampered_artifact_is_refused(run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("run", "report"))
    raw = bytearray((bad / "helper.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / "helper.npz").write_bytes(bytes(raw))
    with pytest.raises(ArtifactIntegrityError, match=r"helper\.npz.*sha256"):
        load_artifact(bad)
    with pytest.raises(ArtifactIntegrityError, match=r"helper\.npz"):
        evaluate_main(ArtifactEvalConfig(artifact=bad, env=TINY_ENV))


def test_feature_dimension_mismatch_is_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactSchemaError, match="feature dimension"):
        load_artifact(run_dir, expected_feature_dim=3)
    with pytest.raises(ValueError, match="features"):
        evaluate_main(ArtifactEvalConfig(artifact=run_dir, env="taxi", out=tmp_path / "x"))


def test_cli_evaluate_reuses_the_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code = cli.main(
        [
            "evaluate",
            "--artifact",
            str(run_dir),
            "--env",
            TINY_ENV,
            "--out",
            str(out),
            "--budgets",
            "0,2",
            "--episodes",
            "60",
            "--eval-tasks",
            "60",
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["budgets"] == [0, 2]
    # Comparators saved beside the artifact are evaluated again.
    assert {"helper", "lagrangian_helper", "offline_rl", "dp_oracle"} <= set(metrics["policies"])


def test_train_cli_needs_exactly_one_of_env_and_default(tmp_path: Path) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "x")]) == 2


def test_export_log_round_trip(tmp_path: Path) -> None:
    """Episodes written in the service's decision-log schema come back as the same step log."""
    from training.envs import episode_rng, episodes_to_steplog, make_env, run_episode
    from training.export_log import ExportConfig
    from training.export_log import main as export_main
    from training.steplog_io import read_steplog

    adapter = make_env(TINY_ENV)
    episodes = []
    for i in range(12):
        rng, dyn = episode_rng(3, i, 0)
        episodes.append(
            run_episode(adapter, i, 0.3, rng=rng, budget=2, dynamics_seed=dyn, episode_id=i)
        )
    expected = episodes_to_steplog(episodes, len(adapter.feature_names))
    lines = []
    for ep in episodes:
        sid = f"sess-{ep.episode_id}"
        for j in range(len(ep)):
            lines.append(
                {
                    "schema_version": 1,
                    "ts": 0.0,
                    "record": "decision",
                    "episode_id": sid,
                    "tenant": "t1",
                    "request_id": f"{sid}-{j}",
                    "t": ep.t[j],
                    "state_key": ep.state_key[j],
                    "features": ep.features[j].tolist(),
                    "text": None,
                    "action": ep.action[j],
                    "intervention_type": 0,
                    "cost": ep.cost[j],
                    "steps_left": adapter.horizon - ep.t[j],
                    "behavior_p": float(ep.action[j]),
                }
            )
        lines.append(
            {
                "schema_version": 1,
                "ts": 0.0,
                "record": "outcome",
                "episode_id": sid,
                "tenant": "t1",
                "success": ep.success,
                "steps": ep.steps,
            }
        )
    lines.append(
        {
            "record": "decision",
            "episode_id": None,
            "t": 0,
            "state_key": 1,
            "features": [0.0] * expected.feature_dim,
            "action": 0,
        }
    )  # stateless: skipped
    lines.append(
        {
            "record": "decision",
            "episode_id": "open",
            "tenant": "t1",
            "t": 0,
            "state_key": 1,
            "features": [0.0] * expected.feature_dim,
            "action": 0,
        }
    )  # no outcome
    src = tmp_path / "decisions.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = export_main(ExportConfig(log=src, out=tmp_path / "steplog"))
    train, manifest = read_steplog(out, split="train")
    test, _ = read_steplog(out, split="test")
    assert manifest["export"]["sessions_without_outcome"] == 1
    assert manifest["export"]["stateless_decisions"] == 1
    assert (manifest["k"], manifest["cost"]) == (1, 1)
    assert manifest["step_limits"] == {str(i): adapter.horizon for i in range(12)}
    # sessions are split whole: 20% of 12 -> 2 held out, none in both splits
    assert len(np.unique(test.episode_id)) == 2
    assert not set(np.unique(test.episode_id)) & set(np.unique(train.episode_id))
    both, _ = read_steplog(out)
    got = both.take(np.argsort(both.episode_id, kind="stable"))
    for name in ("t", "state_key", "action", "cost", "duration", "done", "success", "truncated"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert np.allclose(got.features, expected.features)
    inner = ~expected.done
    assert np.array_equal(got.next_state_key[inner], expected.next_state_key[inner])
    assert np.array_equal(
        np.unique(got.episode_id, return_counts=True)[1],
        np.unique(expected.episode_id, return_counts=True)[1],
    )
    # A broken line is refused with its file and line number.
    src.write_text(src.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"decisions\.jsonl:\d+: not valid JSON"):
        export_main(ExportConfig(log=src, out=tmp_path / "again"))
