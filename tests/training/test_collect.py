"""Collection: determinism, worker independence, round trips, resumption, refusal of bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpseek_core.types import STEP_LOG_COLUMNS, StepLog
from training.cli import main as cli_main
from training.collect import main as collect_main
from training.envs import episode_rng, episodes_to_steplog, make_env, run_episode
from training.steplog_io import StepLogError, read_shard, read_steplog, write_steplog

COLUMNS = STEP_LOG_COLUMNS


def assert_same_log(a: StepLog, b: StepLog) -> None:
    assert len(a) == len(b)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.text == b.text


def _quiet(_: str) -> None:
    pass


def _episode_log(spec: str, seed: int, p: float) -> StepLog:
    adapter = make_env(spec)
    eps = []
    for j in range(5):
        rng, dyn = episode_rng(0, seed, j)
        eps.append(run_episode(adapter, seed, p, rng=rng, k=2, dynamics_seed=dyn, episode_id=j))
    return episodes_to_steplog(eps, len(adapter.feature_names))


@pytest.mark.parametrize("spec", ["frozenlake", "cliffwalking", "gotolocal"])
def test_same_seed_same_log(spec: str) -> None:
    a, b = _episode_log(spec, 3, 0.3), _episode_log(spec, 3, 0.3)
    assert_same_log(a, b)
    assert not np.array_equal(a.state_key, _episode_log(spec, 4, 0.3).state_key)


def test_log_rows_are_consistent(tmp_path: Path, tiny_config) -> None:
    out = collect_main(tiny_config(tmp_path, k=3), log=_quiet)
    log, manifest = read_steplog(out)
    assert manifest["counts"]["train"]["episodes"] == 6 * 11 and manifest["k"] == 3
    ends = np.flatnonzero(log.done)
    assert len(ends) == 6 * 11 + 2 * 11 and ends[-1] == len(log) - 1
    # next_state_key of a row is the state_key of the next row of the same episode
    same = ~log.done[:-1]
    np.testing.assert_array_equal(log.next_state_key[:-1][same], log.state_key[1:][same])
    np.testing.assert_array_equal(log.t[1:][same], (log.t[:-1] + log.duration[:-1])[same])
    assert np.all(log.duration[log.action == 0] == 1) and np.all(log.duration <= 3)
    assert np.all(log.cost == log.action)  # cost 1 exactly when intervening
    np.testing.assert_allclose(np.unique(log.behavior_p), np.linspace(0, 1, 11), atol=1e-6)
    train, _ = read_steplog(out, split="train")
    assert set(np.unique(train.task_id)) == set(range(6))


def test_two_workers_give_the_same_rows_as_one(tmp_path: Path, tiny_config) -> None:
    one = collect_main(tiny_config(tmp_path / "one", workers=1), log=_quiet)
    two = collect_main(tiny_config(tmp_path / "two", workers=2), log=_quiet)
    assert_same_log(read_steplog(one)[0], read_steplog(two)[0])


def test_resume_skips_finished_shards(tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(tmp_path)
    first = read_steplog(collect_main(cfg, log=_quiet))[0]
    shard = tmp_path / "shards" / "train-0000002.parquet"
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").iterdir()}
    shard.unlink()
    lines: list[str] = []
    collect_main(cfg, log=lines.append)
    assert "8 shards, 7 already done, 1 to run" in lines[0]
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {shard.name}
    assert_same_log(first, read_steplog(tmp_path)[0])
    with pytest.raises(StepLogError, match="different collection config; use a fresh --out"):
        collect_main(tiny_config(tmp_path, k=2), log=_quiet)


def test_round_trip_through_parquet(tmp_path: Path) -> None:
    log = _episode_log("taxi", 1, 0.5)
    log = StepLog(
        **{c: getattr(log, c) for c in COLUMNS}, text=tuple(f"row {i}" for i in range(len(log)))
    )
    path = write_steplog(log, tmp_path / "x.parquet", [f"f{i}" for i in range(log.feature_dim)])
    back, meta = read_shard(path)
    assert_same_log(log, back)
    assert back.features.dtype == np.float32 and meta["feature_dim"] == log.feature_dim


def test_corrupt_and_foreign_parquet_are_refused(tmp_path: Path, tiny_config) -> None:
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(StepLogError, match=r"corrupt\.parquet: not a readable Parquet file \("):
        read_steplog(corrupt)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"episode_id": [1, 2], "x": [0.5, 0.1]}), foreign)
    with pytest.raises(StepLogError) as err:
        read_steplog(foreign)
    assert str(err.value) == f"{foreign}: not a HelpSeek step log (no 'helpseek.steplog' metadata)"
    # a real shard truncated in the middle is refused too, naming the file
    out = collect_main(tiny_config(tmp_path / "c", test_seeds=(), train_seeds=(0,)), log=_quiet)
    shard = next((out / "shards").iterdir())
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(StepLogError, match=f"{shard.name}: not a readable Parquet file"):
        read_steplog(out)
    with pytest.raises(StepLogError, match="no step-log manifest"):
        read_steplog(tmp_path)


def test_cli_collect_and_error_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(
        [
            "collect",
            "--env",
            "FrozenLake-v1:map_name=4x4",
            "--out",
            str(tmp_path),
            "--train-seeds",
            "0-2",
            "--test-seeds",
            "9",
            "--episodes-per-seed",
            "4",
            "--p-grid",
            "0,1",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["env"] == "FrozenLake-v1:map_name=4x4" and manifest["p_grid"] == [0.0, 1.0]
    assert manifest["seeds"] == {"train": [0, 1, 2], "test": [9]}
    assert cli_main(["collect", "--env", "Nope-v0", "--out", str(tmp_path / "x")]) == 2
    assert "helpseek collect: error: env spec 'Nope-v0': cannot build" in capsys.readouterr().err


def test_ray_backend_matches_process_backend(
    tmp_path: Path, tiny_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray started for the run
    cfg = tiny_config(
        tmp_path / "ray", backend="ray", workers=2, train_seeds=(0, 1), test_seeds=(7,)
    )
    out = collect_main(cfg, log=_quiet)  # any Ray failure fails the test
    ref = collect_main(
        tiny_config(tmp_path / "ref", train_seeds=(0, 1), test_seeds=(7,)), log=_quiet
    )
    assert_same_log(read_steplog(out)[0], read_steplog(ref)[0])
    assert json.loads((out / "manifest.json").read_text())["last_run"]["backend"] == "ray"


# A plug-in that wraps any spec: it records where each episode ran (a file per Ray node, a line
# per episode),
# dies once (os._exit) on one task seed, and can be slow. Used by the Ray cluster tests too.
WATCHED = """
import os
import time
from pathlib import Path

from training.envs import make_env


class Watched:
    def __init__(self, inner, folder, die_on, delay):
        self.__dict__.update(_inner=inner, _folder=Path(folder), _die_on=die_on, _delay=delay)
        self.spec = ""

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def reset(self, seed, dynamics_seed=None):
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
        with open(self._folder / f"node-{node}", "a") as seen:  # one line per episode
            seen.write(f"{seed}\\n")
        if seed == self._die_on and not (self._folder / "died").exists():
            (self._folder / "died").touch()
            os._exit(3)
        time.sleep(self._delay)
        self._inner.reset(seed, dynamics_seed)


def make_adapter(inner, folder, die_on=-1, delay=0.0):
    return Watched(make_env(inner), folder, die_on, delay)
"""


def test_a_dead_worker_stops_the_run_and_the_same_command_resumes(
    tmp_path: Path, tiny_config
) -> None:
    (tmp_path / "watched.py").write_text(WATCHED)
    marks = tmp_path / "marks"
    marks.mkdir()
    cfg = tiny_config(
        tmp_path / "out",
        env=f"{tmp_path}/watched.py:inner=taxi,folder={marks},die_on=3",
        workers=2,
    )
    with pytest.raises(ChildProcessError) as err:
        collect_main(cfg, log=_quiet)
    assert (marks / "died").exists()
    assert re.fullmatch(
        r"collect .*watched\.py:make_adapter:die_on=3,folder=.*,inner=taxi: a worker process "
        r"died \(.*\); \d of 8 shards are written in .*/out/shards: run the same command "
        r"again to resume",
        str(err.value),
    ), str(err.value)
    lines: list[str] = []
    collect_main(cfg, log=lines.append)
    assert re.match(r"collect .*: 8 shards, \d already done, \d to run", lines[0])
    ref = collect_main(tiny_config(tmp_path / "ref"), log=_quiet)
    assert_same_log(read_steplog(cfg.out)[0], read_steplog(ref)[0])


def test_ray_address_needs_the_ray_backend(tmp_path: Path, tiny_config) -> None:
    cfg = tiny_config(tmp_path / "x", ray_address="127.0.0.1:1")
    with pytest.raises(ValueError, match="collect: ray_address '127.0.0.1:1' needs backend 'ray'"):
        collect_main(cfg, log=_quiet)
    assert not (tmp_path / "x").exists()
