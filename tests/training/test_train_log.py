"""``helpseek train --log``: training from a step log with no environment, offline evaluation,
the step-log schema checks, export-log's splits, and the parser derived from the dataclasses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpseek_core.types import STEP_LOG_COLUMNS, StepLog
from training import cli
from training.config import PRMConfig, add_dataclass_arguments, from_namespace
from training.evaluate import EvalConfig
from training.helper_train import HelperConfig
from training.off_policy import is_estimate
from training.pipeline import ModelConfig, TrainConfig
from training.pipeline import main as train_main
from training.staging import staged_output
from training.steplog_io import StepLogError, read_shard, read_steplog, write_log_dir

TINY_ENV = "FrozenLake-v1:map_name=4x4,is_slippery=true,H=30,weak=eps,eps=0.5"
FAST = [
    "--cmax",
    "2",
    "--helper-epochs",
    "8",
    "--no-lagrangian",
    "--no-offline-rl",
    "--budgets",
    "0,1,2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train --env`` on the tiny FrozenLake: collects, trains, evaluates live."""
    out = tmp_path_factory.mktemp("live") / "art"
    cfg = TrainConfig(
        env=TINY_ENV,
        out=out,
        cmax=2,
        train_seeds=tuple(range(12)),
        test_seeds=tuple(range(1000, 1004)),
        prm=PRMConfig(log=Path("."), out=Path("."), epochs=4),
        helper=HelperConfig(epochs=8),
        model=ModelConfig(lagrangian=False, offline_rl=False),
        evaluation=EvalConfig(budgets=(0, 1, 2), episodes=150, n_tasks=150),
        workers=1,
        progress=False,
    )
    return train_main(cfg)


def test_train_log_gives_the_helper_train_env_gives(live_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "from-log"
    assert (
        cli.main(
            [
                "train",
                "--log",
                str(live_run / "run" / "log"),
                "--out",
                str(out),
                "--offline-bootstrap",
                "30",
                *FAST,
            ]
        )
        == 0
    )
    # same log, same seeds -> the same helper, bit for bit
    with np.load(live_run / "helper.npz") as a, np.load(out / "helper.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["evaluation"]["evaluation_kind"] == "offline"
    assert manifest["k"] == 1 and manifest["cost"] == 1 and manifest["git_revision"]
    report = (out / "report" / "report.md").read_text()
    assert "offline estimate" in report and "| helper | 2 |" in report
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for pol in metrics["policies"].values():
        for c in pol["cells"]:
            lo, hi = c["model"]["ci"]
            assert lo <= c["model"]["success"] <= hi
    # evaluated live, the --log helper scores within 0.02 of the --env one (same seeds)
    ev = tmp_path / "ev"
    assert (
        cli.main(
            [
                "evaluate",
                "--artifact",
                str(out),
                "--env",
                TINY_ENV,
                "--out",
                str(ev),
                "--budgets",
                "0,1,2",
                "--episodes",
                "150",
                "--eval-tasks",
                "150",
                "--no-progress",
            ]
        )
        == 0
    )
    got = json.loads((ev / "metrics.json").read_text())["policies"]["helper"]["cells"]
    ref = json.loads((live_run / "report" / "metrics.json").read_text())["policies"]["helper"][
        "cells"
    ]
    for g, r in zip(got, ref, strict=True):
        assert abs(g["success"] - r["success"]) <= 0.02, (g, r)
    # the live figure of never lies inside the offline model-based interval (never: no model error
    # from the helper, only the held-out model's)
    never_live = json.loads((live_run / "report" / "metrics.json").read_text())["reference"][
        "never"
    ]
    lo, hi = metrics["policies"]["never"]["cells"][0]["model"]["ci"]
    assert lo <= never_live["success"] <= hi


def test_is_estimate_matches_hand_computed_weights() -> None:
    # two episodes: (p=0.5: proceed, intervene; success) and (p=0.2: proceed, proceed; failure)
    log = StepLog(
        episode_id=np.array([0, 0, 1, 1]),
        task_id=np.zeros(4),
        t=np.array([0, 1, 0, 1]),
        state_key=np.array([1, 2, 1, 3]),
        features=np.zeros((4, 1)),
        action=np.array([0, 1, 0, 0]),
        intervention_type=np.zeros(4),
        cost=np.array([0, 1, 0, 0]),
        duration=np.ones(4),
        next_state_key=np.array([2, 9, 3, 8]),
        done=np.array([0, 1, 0, 1], bool),
        truncated=np.zeros(4, bool),
        success=np.array([1, 1, 0, 0], bool),
        behavior_p=np.array([0.5, 0.5, 0.2, 0.2]),
    )
    left = np.array([5, 4, 5, 4])

    def second_step(rows: np.ndarray, c: np.ndarray, steps_left: np.ndarray) -> np.ndarray:
        return log.t[rows] == 1  # intervene at t = 1 whenever the budget allows

    # the behaviour is the mixture of the episodes' p (1/2 each): P_b(prefix) averages the two
    w, r = is_estimate(log, left, second_step, budget=1, cost=1)
    # episode 0 agrees (proceed, intervene): 1 / (0.5 * 0.5 * 0.5 + 0.5 * 0.8 * 0.2);
    # episode 1 proceeds at t=1 where the policy intervenes: weight 0
    np.testing.assert_allclose(w, [1 / (0.5 * 0.25 + 0.5 * 0.16), 0.0])
    np.testing.assert_array_equal(r, [1.0, 0.0])
    w0, _ = is_estimate(log, left, second_step, budget=0, cost=1)
    # with no budget the policy must proceed: episode 0 disagrees; episode 1 (proceed, proceed)
    np.testing.assert_allclose(w0, [0.0, 1 / (0.5 * 0.25 + 0.5 * 0.64)])
    # p varying inside an episode: the rows' own probabilities, multiplied
    mixed = StepLog(
        **{
            **{n: getattr(log, n) for n in STEP_LOG_COLUMNS if n != "behavior_p"},
            "behavior_p": np.array([0.5, 0.25, 0.2, 0.2]),
        }
    )
    wm, _ = is_estimate(mixed, left, second_step, budget=1, cost=1)
    np.testing.assert_allclose(wm, [1 / (0.5 * 0.25), 0.0])


def _good_shard(tmp_path: Path) -> tuple[Path, pa.Table]:
    log = StepLog(
        episode_id=np.array([0, 0, 1]),
        task_id=np.zeros(3),
        t=np.array([0, 1, 0]),
        state_key=np.array([1, 2, 1]),
        features=np.zeros((3, 2)),
        action=np.array([0, 0, 1]),
        intervention_type=np.zeros(3),
        cost=np.array([0, 0, 1]),
        duration=np.ones(3),
        next_state_key=np.array([2, 2, 5]),
        done=np.array([0, 1, 1], bool),
        truncated=np.zeros(3, bool),
        success=np.array([1, 1, 0], bool),
        behavior_p=np.full(3, 0.5),
    )
    out = write_log_dir(
        tmp_path / "ok", {"train": log}, ["a", "b"], env="mine", agent="x", expert="y", k=1, cost=1
    )
    path = out / "shards" / "train.parquet"
    return path, pq.read_table(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop_columns(["behavior_p"]), r"lacks column\(s\) \['behavior_p'\]"),
        (
            lambda t: t.set_column(t.schema.get_field_index("t"), "t", pa.array(["0", "1", "0"])),
            r"column 't' has type string, expected integer",
        ),
        (
            lambda t: t.set_column(t.schema.get_field_index("t"), "t", pa.array([0, 2, 0])),
            r"row 0, column 't': the next row of this episode must have t = t \+ duration",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("action"), "action", pa.array([0, 2, 1])
            ),
            r"row 1, column 'action': must be 0 or 1",
        ),
        (
            lambda t: t.take([2, 0, 1]).set_column(0, "episode_id", pa.array([0, 1, 0])),
            r"row 2, column 'episode_id': episode 0 continues",
        ),
    ],
)
def test_bad_logs_are_refused_naming_file_row_and_column(tmp_path: Path, edit, message) -> None:
    path, table = _good_shard(tmp_path)
    read_shard(path)  # the good one reads
    bad = edit(table).replace_schema_metadata(table.schema.metadata)
    pq.write_table(bad, path)
    with pytest.raises(StepLogError, match=message) as info:
        read_shard(path)
    assert str(info.value).startswith(str(path))
    out = tmp_path / "never-written"
    assert cli.main(["train", "--log", str(path.parent.parent), "--out", str(out), *FAST]) == 2
    assert not out.exists() and not list(tmp_path.glob(".never-written*"))


def test_a_failed_stage_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "o"
    with pytest.raises(RuntimeError), staged_output(out, marker="config.json") as stage:
        (stage / "config.json").write_text("{}")
        raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user data")
    with (
        pytest.raises(ValueError, match="not an earlier output"),
        staged_output(tmp_path / "mine", marker="config.json"),
    ):
        pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user data"


def test_prm_log_needs_no_environment(live_run: Path, tmp_path: Path) -> None:
    """A log whose env is not buildable ("service", as export-log writes) trains a PRM."""
    train, _ = read_steplog(live_run / "run" / "log", split="train")
    names = [f"f{i}" for i in range(train.feature_dim)]
    src = write_log_dir(
        tmp_path / "svc",
        {"train": train},
        names,
        env="service",
        agent="production",
        expert="production",
        k=1,
        cost=1,
    )
    out = tmp_path / "prm"
    assert (
        cli.main(["prm", "--log", str(src), "--out", str(out), "--epochs", "2", "--no-progress"])
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"].startswith("held-out episodes") and "exact_mae" not in report


def test_parser_is_derived_from_the_dataclass() -> None:
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, TrainConfig, skip=("prm",), aliases={"model.n_min": "--n-min"})
    text = p.format_help()
    # the field's docstring is the help, its default is shown, nested fields are prefixed
    assert "Largest budget the helper is trained for" in text and "(default: 5)" in text
    assert "--helper-epochs" in text and "--n-min" in text and "--no-progress" in text
    ns = p.parse_args(
        [
            "--out",
            "x",
            "--env",
            "taxi",
            "--train-seeds",
            "0-2,7",
            "--helper-epochs",
            "3",
            "--no-progress",
            "--evaluation-budgets",
            "0,2",
        ]
    )
    cfg = from_namespace(TrainConfig, ns)
    assert cfg.train_seeds == (0, 1, 2, 7) and cfg.helper.epochs == 3 and not cfg.progress
    assert cfg.evaluation.budgets == (0, 2) and cfg.helper.lr == HelperConfig().lr  # others kept
    assert cfg.cmax == 5 and cfg.out == Path("x")


@pytest.mark.parametrize("k", [1, 2])
def test_policy_q_agrees_with_the_exact_forward_evaluation(k: int) -> None:
    """The DR's backward Q^pi, read at t = 0 under the start distribution, equals core's
    independent forward pass (exact.evaluate_policy) for arbitrary budgeted policies."""
    from helpseek_core.exact import evaluate_policy
    from training.envs import make_env
    from training.off_policy import policy_q
    from training.phase2 import oracle_for

    model, _, kind = oracle_for(make_env(TINY_ENV), k=k, cost=1, cmax=3, estimated=None)
    assert kind == "exact" and model is not None
    rng = np.random.default_rng(k)
    s = model.n_states
    for _ in range(3):
        table = rng.random((model.horizon, s, 4)) < 0.3
        table[:, :, 0] = False  # never intervene without budget
        q0, q1 = policy_q(model, table, np.zeros(s, np.int64), np.arange(s))
        v0 = np.where(table[0], q1, q0)
        for c in range(4):
            want, _ = evaluate_policy(model, table, budget=c)
            assert model.start @ v0[:, c] == pytest.approx(want, abs=1e-9)


def test_export_log_then_train_log_round_trip(tmp_path: Path) -> None:
    """Decision records (explore sessions: behaviour p logged) -> export-log -> train --log."""
    from helpseek_core.artifact import load_artifact
    from helpseek_core.helper import Helper
    from training.envs import episode_rng, make_env, run_episode

    adapter = make_env(TINY_ENV)
    lines = []
    for i in range(120):
        p = (i % 6) / 5
        rng, dyn = episode_rng(7, i % 10, i // 10)
        ep = run_episode(adapter, i % 10, p, rng=rng, dynamics_seed=dyn, episode_id=i)
        sid = f"s{i}"
        for j in range(len(ep)):
            lines.append(
                {
                    "record": "decision",
                    "episode_id": sid,
                    "tenant": "t",
                    "t": ep.t[j],
                    "state_key": ep.state_key[j],
                    "features": ep.features[j].tolist(),
                    "action": ep.action[j],
                    "cost": ep.cost[j],
                    "behavior_p": p,
                    "steps_left": adapter.horizon - ep.t[j],
                }
            )
        lines.append(
            {
                "record": "outcome",
                "episode_id": sid,
                "tenant": "t",
                "success": ep.success,
                "steps": ep.steps,
            }
        )
    src = tmp_path / "decisions.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    steplog = tmp_path / "steplog"
    assert cli.main(["export-log", "--log", str(src), "--out", str(steplog)]) == 0
    out = tmp_path / "art"
    assert (
        cli.main(
            ["train", "--log", str(steplog), "--out", str(out), "--offline-bootstrap", "20", *FAST]
        )
        == 0
    )
    art = load_artifact(out)
    helper = Helper.from_artifact(art)
    assert art.manifest["env"] == "service" and art.manifest["horizon"] == adapter.horizon
    assert art.manifest["source"]["held_out"] == "test split"
    assert art.manifest["helper"]["fit"]["rows"] > 0 and helper.cmax == 2
    assert art.manifest["dp"]["usage"][2] > 0  # the log taught the DP when to ask


def test_the_documented_writer_example_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/your-agent.md "The step-log schema": its Python example runs and train --log takes it."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "your-agent.md").read_text()
    section = doc[doc.index('<!-- BEGIN "The step-log schema"') :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "your-agent.md", "exec"), {})  # noqa: S102 - our own documentation
    train, manifest = read_steplog(tmp_path / "my-log", split="train")
    assert len(np.unique(train.episode_id)) == 160 and manifest["env"] == "my-system"
    assert (
        cli.main(
            [
                "train",
                "--log",
                "my-log",
                "--out",
                "my-artifact",
                "--cmax",
                "2",
                "--offline-bootstrap",
                "10",
                "--helper-epochs",
                "3",
                "--no-lagrangian",
                "--no-offline-rl",
                "--budgets",
                "0,1,2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "offline estimate" in (tmp_path / "my-artifact" / "report" / "report.md").read_text()
