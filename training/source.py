"""Where a training run's steps come from: live collection, or a step log on disk.

A :class:`StepSource` gives the pipeline a :class:`Steps` record — the training log, its
held-out episodes, each row's steps left, the problem constants (k, cost) and, when there is
one, the environment. :class:`LiveSource` collects from an environment into the run
(``helpseek train --env``); :class:`LogSource` reads any step log in the schema of
:mod:`training.steplog_io` (``helpseek collect``'s, ``export-log``'s, or one written with
:func:`~training.steplog_io.write_log_dir`) and needs no environment (``helpseek train --log``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from helpseek_core.types import StepLog
from training.config import CollectConfig
from training.envs import EnvAdapter, make_env
from training.phase2 import steps_left_from_limits, task_steps_left
from training.steplog_io import StepLogError, read_splits, step_limits

__all__ = ["LiveSource", "LogSource", "StepSource", "Steps"]

Say = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Steps:
    """What a source gives the pipeline (N train rows, M held-out rows)."""

    log: StepLog  # (N,) training rows
    test: StepLog  # (M,) held-out episodes (PRM calibration, offline evaluation)
    held_out: str  # how ``test`` was chosen ("test split" / "held-out episodes (...)")
    manifest: dict[str, Any]  # the step log's manifest
    log_dir: Path  # where the log lives
    horizon: int  # H of the tabular model: the largest step limit
    steps_left: np.ndarray  # (N,) int64   the row's task step limit minus t
    test_steps_left: np.ndarray  # (M,) int64
    k: int  # env steps per intervention
    cost: int  # budget units per intervention
    env: str  # the environment spec, or the log's "env" entry
    agent: str
    expert: str
    feature_names: list[str]
    adapter: EnvAdapter | None = None  # the live environment, if there is one
    train_seeds: tuple[int, ...] = ()  # the collection's training task seeds, if known


class StepSource(Protocol):
    """A source of steps: ``steps(run_dir, say)`` -> :class:`Steps`."""

    @property
    def stage(self) -> str:
        """The stage name in timings ("collect", "read log")."""
        ...

    def steps(self, run_dir: Path, say: Say) -> Steps:
        """Return the steps; may write under ``run_dir`` (a live collection does)."""
        ...


def _limits(
    log: StepLog, adapter: EnvAdapter | None, manifest: dict[str, Any]
) -> tuple[int, np.ndarray]:
    if adapter is not None:
        return task_steps_left(log, adapter)
    known = step_limits(manifest, log)
    if known is not None:
        return steps_left_from_limits(log, *known)
    horizon = int(manifest.get("horizon") or 0)
    t = log.t.astype(np.int64)
    longest = int((t + log.duration).max())
    horizon = max(horizon, longest)
    return horizon, horizon - t


@dataclass(frozen=True)
class LiveSource:
    """Collect from the environment into ``RUN/log`` (Phase I, ``helpseek collect``)."""

    collect: CollectConfig  # ``out`` is replaced by the run's log folder
    stage: str = "collect"

    def steps(self, run_dir: Path, say: Say) -> Steps:
        """Collect, then read the train / test splits back."""
        from training import collect as collect_stage

        log_dir = collect_stage.main(replace(self.collect, out=run_dir / "log"), log=say)
        return _steps(log_dir, make_env(self.collect.env), self.collect.k, self.collect.cost)


@dataclass(frozen=True)
class LogSource:
    """Read a step log; ``env`` (optional) adds the live environment for evaluation."""

    path: Path
    env: str | None = None
    k: int | None = None  # default: the log's manifest, else inferred from its rows
    cost: int | None = None
    test_fraction: float = 0.2  # held out when the log has no test split
    split_seed: int = 0
    stage: str = "read log"

    def steps(self, run_dir: Path, say: Say) -> Steps:
        """Read and check the log (nothing is written)."""
        adapter = make_env(self.env) if self.env else None
        return _steps(
            Path(self.path), adapter, self.k, self.cost, self.test_fraction, self.split_seed
        )


def _infer(manifest: dict[str, Any], log: StepLog, name: str, given: int | None) -> int:
    if given is not None:
        return int(given)
    if manifest.get(name) is not None:
        return int(manifest[name])
    act = log.action == 1
    if not act.any():
        return 1
    vals = log.cost[act] if name == "cost" else log.duration[act]
    return int(vals.max())


def _steps(
    log_dir: Path,
    adapter: EnvAdapter | None,
    k: int | None,
    cost: int | None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Steps:
    train, test, manifest, how = read_splits(log_dir, test_fraction, split_seed)
    names = list(manifest.get("feature_names") or [f"f{i}" for i in range(train.feature_dim)])
    if len(names) != train.feature_dim:
        raise StepLogError(
            f"{log_dir}: {len(names)} feature names for dimension {train.feature_dim}"
        )
    if adapter is not None and len(adapter.feature_names) != train.feature_dim:
        raise StepLogError(
            f"{log_dir}: the log has {train.feature_dim} features, env {adapter.spec!r} gives "
            f"{len(adapter.feature_names)}"
        )
    horizon, left = _limits(train, adapter, manifest)
    _, test_left = _limits(test, adapter, manifest)
    seeds = tuple(int(s) for s in (manifest.get("seeds") or {}).get("train", ()))
    return Steps(
        log=train,
        test=test,
        held_out=how,
        manifest=manifest,
        log_dir=log_dir,
        horizon=horizon,
        steps_left=left,
        test_steps_left=test_left,
        k=_infer(manifest, train, "k", k),
        cost=_infer(manifest, train, "cost", cost),
        env=adapter.spec if adapter is not None else str(manifest.get("env", "log")),
        agent=adapter.agent if adapter is not None else str(manifest.get("agent", "unknown")),
        expert=adapter.expert if adapter is not None else str(manifest.get("expert", "unknown")),
        feature_names=names,
        adapter=adapter,
        train_seeds=seeds,
    )
