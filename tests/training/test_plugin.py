"""Bring your own agent: a user's adapter file, from a folder outside the repository.

The user's file is the DoorKey example (an environment nobody here wrote, not built in),
copied into a temporary folder; every command runs as a subprocess of the installed
``helpseek`` script with that folder as its working directory. ``check-env`` is exercised on
a small corridor adapter written here, with one fault injected at a time.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_collect import assert_same_log
from training.check_env import CheckEnvConfig, EnvCheckError
from training.check_env import main as check_main
from training.collect import collect_shard, collect_shard_bytes, plan_shards
from training.config import CollectConfig
from training.envs.plugin import plugin_sources
from training.steplog_io import read_shard, read_steplog

REPO = Path(__file__).resolve().parents[2]
HELPSEEK = str(Path(sys.executable).parent / "helpseek")
EXAMPLE = REPO / "examples" / "doorkey_adapter.py"


def _helpseek(cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HELPSEEK, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder outside the repository holding the user's adapter file."""
    assert REPO not in tmp_path.parents
    shutil.copy(EXAMPLE, tmp_path / "my_adapter.py")
    return tmp_path


def test_collect_train_evaluate_a_user_adapter_with_the_cli_alone(user_folder: Path) -> None:
    spec = f"{user_folder}/my_adapter.py:make_adapter:eps=0.6,H=30"
    common = ["--train-seeds", "0-29", "--test-seeds", "1000-1003", "--episodes-per-seed", "11"]
    two = _helpseek(
        user_folder,
        "collect",
        "--env",
        spec,
        "--out",
        "log2",
        *common,
        "--workers",
        "2",
        "--no-progress",
    )
    assert two.returncode == 0, two.stderr
    one = _helpseek(
        user_folder,
        "collect",
        "--env",
        "my_adapter.py:eps=0.6,H=30",
        "--out",
        "log1",
        *common,
        "--workers",
        "1",
        "--no-progress",
    )
    assert one.returncode == 0, one.stderr
    log2, manifest = read_steplog(user_folder / "log2")
    assert manifest["env"] == f"{user_folder}/my_adapter.py:make_adapter:H=30,eps=0.6"
    assert manifest["agent"] == "planner+eps0.6" and manifest["expert"] == "bfs-planner"
    assert manifest["feature_dim"] == 22 and manifest["counts"]["train"]["episodes"] == 330
    # two worker processes (forked) and one give the same rows; the relative path the same spec
    assert_same_log(log2, read_steplog(user_folder / "log1")[0])

    run = _helpseek(
        user_folder,
        "train",
        "--env",
        "my_adapter.py:make_adapter:eps=0.6,H=30",
        "--out",
        "art",
        *common,
        "--cmax",
        "2",
        "--no-offline-rl",
        "--no-lagrangian",
        "--helper-epochs",
        "5",
        "--budgets",
        "0,2",
        "--episodes",
        "20",
        "--eval-tasks",
        "20",
        "--calibration",
        "rate",
        "--no-progress",
    )
    assert run.returncode == 0, run.stderr
    art = json.loads((user_folder / "art" / "manifest.json").read_text())
    assert art["feature_schema"]["dim"] == 22 and art["cmax"] == 2
    metrics = json.loads((user_folder / "art" / "report" / "metrics.json").read_text())
    assert {"helper", "dp_oracle", "random"} <= set(metrics["policies"])
    assert metrics["reference"]["always"]["success"] > metrics["reference"]["never"]["success"]

    other = user_folder / "elsewhere"
    other.mkdir()  # evaluate from another folder, with the absolute spec
    ev = _helpseek(
        other,
        "evaluate",
        "--artifact",
        "../art",
        "--env",
        spec,
        "--out",
        "eval",
        "--budgets",
        "0,2",
        "--episodes",
        "20",
        "--eval-tasks",
        "20",
        "--calibration",
        "rate",
        "--no-progress",
    )
    assert ev.returncode == 0, ev.stderr
    report = json.loads((other / "eval" / "metrics.json").read_text())
    assert report["env"] == manifest["env"]
    cells = report["policies"]["helper"]["cells"]
    assert [c["budget"] for c in cells] == [0, 2] and all(c["episodes"] == 20 for c in cells)
    assert all(c["violations"] == 0 for c in cells)


def test_bad_plugin_specs_exit_2_naming_the_spec_and_leave_no_output(user_folder: Path) -> None:
    (user_folder / "broken.py").write_text("def make_adapter(**kw):\n    raise OSError('no sim')\n")
    res = _helpseek(user_folder, "collect", "--env", "broken.py:make_adapter:H=3", "--out", "x")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"helpseek collect: error: env spec '{user_folder}/broken.py:make_adapter:H=3': "
        "make_adapter(H=3) raised OSError: no sim"
    )
    assert not (user_folder / "x").exists()
    res = _helpseek(user_folder, "collect", "--env", "MiniGrid-DoorKey-5x5-v0", "--out", "x")
    assert res.returncode == 2 and "docs/your-agent.md" in res.stderr
    assert not (user_folder / "x").exists()


def _tasks(folder: Path) -> list[dict[str, object]]:
    cfg = CollectConfig(
        env=f"{folder}/my_adapter.py:H=30",
        out=folder / "ref",
        train_seeds=(0, 1),
        test_seeds=(),
        episodes_per_seed=6,
        workers=1,
        progress=False,
    )
    (folder / "ref" / "shards").mkdir(parents=True)
    return plan_shards(cfg)


def _shipped(args: tuple[dict[str, object], dict[str, bytes], str]) -> bytes:
    import os

    os.chdir(args[2])  # a worker somewhere else: only the shipped bytes can be used
    return collect_shard_bytes(args[0], args[1])[1]  # type: ignore[arg-type]


def test_spawned_and_ray_style_workers_rebuild_the_plugin(
    user_folder: Path, tmp_path_factory
) -> None:
    tasks = _tasks(user_folder)
    reference = [collect_shard(t) and read_shard(t["path"])[0] for t in tasks]  # type: ignore[arg-type]
    ctx = mp.get_context("spawn")
    elsewhere = str(tmp_path_factory.mktemp("elsewhere"))
    sources = plugin_sources([f"{user_folder}/my_adapter.py"])
    # 1. a spawned process re-imports the file by its path
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        blobs = list(pool.map(_shipped, [(t, {}, elsewhere) for t in tasks]))
    # 2. a worker whose copy of the file is stale runs the driver's shipped content instead
    (user_folder / "my_adapter.py").write_text("raise ImportError('stale copy on this node')\n")
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        blobs += list(pool.map(_shipped, [(t, sources, elsewhere) for t in tasks]))
    # 3. and one where the file does not exist at all
    (user_folder / "my_adapter.py").unlink()
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        blobs += list(pool.map(_shipped, [(t, sources, elsewhere) for t in tasks]))
    for i, blob in enumerate(blobs):
        path = Path(elsewhere) / f"shard-{i}.parquet"
        path.write_bytes(blob)
        assert_same_log(read_shard(path)[0], reference[i % len(tasks)])


# ---- helpseek check-env ------------------------------------------------------------------

CORRIDOR = '''
"""A corridor 0..L: reach L within H steps. The weak agent steps right with probability 0.55."""
import numpy as np
from training.envs import ExactArrays, StepResult


class Corridor:
    feature_names = ["pos", "t_frac"]
    agent, expert, spec = "drift0.55", "go-right", ""
    n_actions = 2

    def __init__(self, fault="", L=4, H=12):
        self.fault, self.L, self.horizon = fault, L, H
        self.pos = self.t = 0

    def reset(self, seed, dynamics_seed=None):
        self.pos, self.t = (np.random.randint(2) if self.fault == "nondet" else seed % 2), 0

    def state_key(self):
        if self.fault == "hashkey":
            return hash(f"cell-{self.pos}")
        return self.pos  # the exact model's state index

    def features(self):
        if self.fault == "shape":
            return np.zeros(3, np.float32)
        value = np.nan if self.fault == "nan" and self.pos == 1 else self.pos / self.L
        return np.array([value, self.t / self.horizon], np.float32)

    def text(self):
        return f"At {self.pos} of {self.L}, step {self.t}."

    def weak_action(self, rng):
        if self.fault == "action":
            return 1.0
        return int(rng.random() < 0.55)

    def expert_action(self):
        return 0 if self.fault == "noexpert" else 1

    def step(self, action):
        self.pos = max(self.pos + (1 if action == 1 else -1), 0)
        self.t += 1
        if self.pos == self.L:
            return StepResult(True, False, True)
        return StepResult(False, self.t >= self.horizon and self.fault != "notrunc", False)

    def exact_arrays(self):
        S, A = self.L, 2
        trans, succ = np.zeros((A, S, S)), np.zeros((A, S))
        for s in range(S):
            trans[0, s, max(s - 1, 0)] = 1
            if s + 1 == self.L:
                succ[1, s] = 1
            else:
                trans[1, s, s + 1] = 1
        if self.fault == "badexact":
            trans[0, 0, 0] = 0.5
        start = np.zeros(S)
        start[:2] = 0.5
        return ExactArrays(np.arange(S, dtype=np.int64), trans, succ, np.zeros((A, S)),
                           np.tile([0.45, 0.55], (S, 1)), np.tile([0.0, 1.0], (S, 1)), start,
                           self.horizon)


def make_adapter(fault="", L=4, H=12):
    return Corridor(fault, L, H)
'''


@pytest.fixture
def corridor(tmp_path: Path) -> Path:
    path = tmp_path / "corridor.py"
    path.write_text(CORRIDOR)
    return path


def test_check_env_passes_a_correct_adapter(corridor: Path) -> None:
    lines: list[str] = []
    report = check_main(CheckEnvConfig(spec=str(corridor), episodes=60), log=lines.append)
    assert not report.problems and lines[-1] == f"{corridor}:make_adapter: all checks passed"
    assert "ok    exact_arrays(): a consistent exact model" in lines
    assert report.expert_success == 1.0 and report.weak_success is not None
    assert report.weak_success < 1.0


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        (
            "shape",
            "features(): must return an array of shape (2,) (one per feature_names entry), got ndarray of shape (3,)",
        ),
        ("nan", "features(): non-finite value(s) at step "),
        (
            "hashkey",
            "state_key(): keys differ in a fresh process: use a stable hash (training.envs.stable_key), not Python's hash()",
        ),
        ("nondet", "state_key(): same seed "),
        ("action", "weak_action(): must return an int, got float 1.0"),
        ("noexpert", "expert_action(): the expert succeeds 0.000, the weak agent "),
        (
            "notrunc",
            "step(): episode of seed 0 ran 13 steps past horizon=12 without truncated=True",
        ),
        ("badexact", "exact_arrays(): trans + succ + fail rows must sum to 1"),
    ],
)
def test_check_env_names_the_failing_method(corridor: Path, fault: str, line: str) -> None:
    length = 100 if fault == "notrunc" else 4  # an episode that cannot reach the end
    spec = f"{corridor}:make_adapter:fault={fault},L={length}"
    with pytest.raises(EnvCheckError) as err:
        check_main(CheckEnvConfig(spec=spec, episodes=60), log=lambda _: None)
    failures = str(err.value).splitlines()[1:]
    assert any(f.strip().startswith(line) for f in failures), failures
    assert all(f.strip().split(":")[0].endswith(")") for f in failures)  # each names a method


def test_check_env_cli_exit_codes(user_folder: Path, corridor: Path) -> None:
    ok = _helpseek(user_folder, "check-env", "my_adapter.py:eps=0.6,H=30", "--episodes", "60")
    assert ok.returncode == 0, ok.stderr
    assert "ok    expert better than weak: 1.000 vs" in ok.stdout
    bad = _helpseek(user_folder, "check-env", f"{corridor}:fault=shape", "--no-fresh-process")
    assert bad.returncode == 2
    assert "FAIL  features(): must return an array of shape (2,)" in bad.stdout
    assert bad.stderr.startswith("helpseek check-env: error: env spec ")
    assert "1 check(s) failed" in bad.stderr
    # the expert beats the weak agent on the example over many more episodes too
    assert np.isfinite(float(ok.stdout.split("vs ")[1].split()[0]))
