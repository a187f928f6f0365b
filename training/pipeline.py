"""``helpseek train``: the whole method on feature states, into one run directory.

    source (collect live, or a step log) -> PRM -> model estimate -> exact DP -> labels ->
    helper (+ Lagrangian helper, + offline-RL comparator) -> evaluation -> artifact export

The stages are :func:`training.skeleton.train`'s; this module is the *features*
representation (MLP PRM on the features, helper MLP on :func:`helpseek_core.helper.encode_inputs`)
and its configuration. Two sources:

- ``helpseek train --env SPEC --out DIR`` (or ``--default``): collect from the environment,
  evaluate live on held-out seeds against every baseline;
- ``helpseek train --log LOG --out DIR``: train from any step log (``helpseek collect``'s,
  ``helpseek export-log``'s, or your own in the schema of :mod:`training.steplog_io`) with no
  environment; the report is an **offline evaluation** on the log's held-out episodes
  (:mod:`training.offline_eval`). ``--log`` with ``--env`` evaluates live as above.

Output directory (``--out DIR``)::

    DIR/manifest.json, helper.npz, prm.npz     the artifact the service loads
    DIR/config.json                            the resolved configuration of this run
    DIR/report/                                report.md, metrics.json (+ plots when live)
    DIR/run/log/                               Phase I step log (live collection only)
    DIR/run/prm/                               PRM and its calibration report
    DIR/run/lagrangian_helper.npz, offline_q.npz   comparators (``helpseek evaluate`` reuses them)
    DIR/run/training.json                      stage timings and helper fit figures

Every option is a field of a frozen dataclass with a docstring (:class:`TrainConfig`,
:class:`ModelConfig`, ``helper_train.HelperConfig``, ``offline_rl.OfflineRLConfig``,
``evaluate.EvalConfig``); the command line is derived from them (``training.config``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.errors import SolverError
from helpseek_core.helper import FeatureStats, Helper
from helpseek_core.occupancy import dp_intervention_rate
from helpseek_core.prm import MLPPRM, PRM_FILE
from helpseek_core.types import StepLog
from training import prm as prm_stage
from training.config import CollectConfig, PRMConfig, add_dataclass_arguments, from_namespace
from training.evaluate import LAGRANGIAN_FILE, EvalConfig, PolicySet
from training.helper_train import (
    HelperConfig,
    budgeted_rows,
    decision_points,
    fit_helper,
    lagrangian_rows,
    row_accuracy,
    save_helper_npz,
)
from training.offline_rl import OFFLINE_RL_FILE, OfflineRLConfig, train_offline_rl
from training.phase2 import StateScorer
from training.skeleton import Phase2, Run, RunSettings, train
from training.source import LiveSource, LogSource, Steps, StepSource

__all__ = [
    "FeatureRepresentation",
    "ModelConfig",
    "TrainConfig",
    "add_arguments",
    "default_config",
    "from_args",
    "main",
]


@dataclass(frozen=True)
class ModelConfig:
    """Phase II: tabular model estimation and the solvers."""

    n_min: int = 1
    """A (state, action) pair seen fewer times than this is valued by the PRM leaf."""
    timeout_failure: str = "auto"
    """Treat a time-out as a failure terminal in the model: 'yes', 'no', or 'auto' (yes when
    the step limit differs per task, as in BabyAI: one global DP horizon cannot see a
    task's own deadline, so the model learns it from the time-outs instead)."""
    leaf: str = "prm"
    """Leaf values: 'prm' (the MLP PRM on the state's features; shrunk tabular PRM for states
    logged only as next states) or 'monte_carlo' (the log's success rates, core's default)."""
    lagrangian: bool = True
    """Also train the Lagrangian-labelled helper (the paper's solver) for comparison."""
    offline_rl: bool = True
    """Also train the offline deep-RL comparator (discrete CQL with the budget in its state)."""


@dataclass(frozen=True)
class TrainConfig:
    """One ``helpseek train`` run: every stage's settings."""

    out: Path
    """Run / artifact directory (written all at once: a failed run leaves none)."""
    env: str | None = None
    """Environment spec (``make_env`` grammar, as for ``helpseek collect``): collect from it
    (without ``log``) and evaluate live in it."""
    log: Path | None = None
    """Train from this step log instead of collecting (no environment needed)."""
    cmax: int = 5
    """Largest budget the helper is trained for (labels for every c <= cmax)."""
    k: int | None = None
    """Env steps per intervention (the expert's macro action); default 1 when collecting,
    the log's own when training from a log."""
    cost: int | None = None
    """Budget units per intervention; default 1 when collecting, the log's own from a log."""
    train_seeds: tuple[int, ...] = tuple(range(100))
    """Task seeds collected for training."""
    test_seeds: tuple[int, ...] = tuple(range(10_000, 10_020))
    """Task seeds of the collection's held-out split (PRM calibration)."""
    episodes_per_seed: int = 22
    """Collection rollouts per task seed (p cycles over the p grid)."""
    workers: int = 2
    """Collection worker processes."""
    test_fraction: float = 0.2
    """From a log without a test split: the fraction of its episodes held out."""
    split_seed: int = 0
    """Seed of that episode split."""
    offline_bootstrap: int = 200
    """Offline evaluation: bootstrap resamples of the held-out episodes per interval."""
    prm: PRMConfig | None = None
    """PRM settings (``log`` / ``out`` are filled in by the pipeline)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Phase II settings."""
    helper: HelperConfig = field(default_factory=HelperConfig)
    """Phase III settings."""
    offline: OfflineRLConfig = field(default_factory=OfflineRLConfig)
    """Offline deep-RL comparator settings."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Live evaluation settings (offline: its budgets)."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for these small MLPs (2 threads on a busy
    2-core machine ran 10x slower in our measurement)."""
    progress: bool = True
    """Progress bars."""

    def __post_init__(self) -> None:
        if self.env is None and self.log is None:
            raise ValueError("helpseek train: give --env SPEC, --log DIR (or both), or --default")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config."""
        d = asdict(self)
        d["out"] = str(self.out)
        d["log"] = None if self.log is None else str(self.log)
        if d["prm"] is not None:
            d["prm"]["log"], d["prm"]["out"] = str(d["prm"]["log"]), str(d["prm"]["out"])
        return d


def default_config(out: Path) -> TrainConfig:
    """Return the built-in default: Taxi with the wall-blind navigator (H=25), ~1 minute on 2 cores."""
    return TrainConfig(
        env="taxi",
        out=out,
        cmax=5,
        train_seeds=tuple(range(100)),
        episodes_per_seed=22,
        prm=PRMConfig(log=Path("."), out=Path("."), epochs=10),
        helper=HelperConfig(epochs=30),
        offline=OfflineRLConfig(steps=1500),
        evaluation=EvalConfig(episodes=300, n_tasks=300, budgets=(0, 1, 2, 3, 5, 8)),
    )


class FeatureRepresentation:
    """Feature states: MLP PRM, helper MLP, Lagrangian and offline-RL comparators."""

    kind = "features"
    id_prefix = ""
    report_title = "HelpSeek evaluation"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.fit: dict[str, Any] = {}
        self.lag_info: dict[str, Any] = {}
        self.lag_helper: Helper | None = None
        self.offline_rl: Any = None

    def fit_prm(self, run: Run, steps: Steps) -> None:
        """``training.prm`` on the source's splits -> ``RUN/prm``; keep the MLP PRM."""
        cfg = self.cfg
        pcfg = replace(
            cfg.prm or PRMConfig(log=steps.log_dir, out=run.run_dir / "prm"),
            log=steps.log_dir,
            out=run.run_dir / "prm",
            progress=cfg.progress,
        )
        prm_dir = prm_stage.fit(
            pcfg,
            steps.log,
            steps.test,
            steps.manifest,
            log_fn=run.say,
            adapter=steps.adapter,
            held_out=steps.held_out,
        )
        with np.load(Path(prm_dir) / PRM_FILE, allow_pickle=False) as npz:
            self.prm_arrays = {k: npz[k] for k in npz.files}
        self.prm = MLPPRM.from_arrays(self.prm_arrays, str(Path(prm_dir) / PRM_FILE))
        run.lap("prm")

    def score_rows(self, log: StepLog) -> StateScorer | None:
        """Score rows with the MLP PRM on their features."""
        feats = log.features
        return lambda rows: self.prm.score(feats[rows])

    def fit_helper(self, run: Run, steps: Steps, p2: Phase2) -> None:
        """Fit the helper MLP on the budgeted DP's label rows, then the comparators."""
        cfg, log, model, cost = self.cfg, steps.log, p2.model, steps.cost
        self.rate = dp_intervention_rate(model, p2.solution)
        self.stats = FeatureStats.fit(log.features)
        points = decision_points(log, model, steps.steps_left)
        rows = budgeted_rows(
            points, model, p2.solution, self.stats, steps.horizon, cost, cfg.helper
        )
        self.mlp = fit_helper(rows, cfg.helper, cfg.progress)
        self.fit = {"helper": row_accuracy(self.mlp, rows, cfg.helper.threshold)}
        self.helper = Helper(
            self.mlp, self.stats, cfg.cmax, steps.horizon, cost, cfg.helper.threshold
        )
        run.lap("helper")
        if cfg.model.lagrangian:
            self._lagrangian(run, steps, p2, points)
            run.lap("lagrangian helper")
        if cfg.model.offline_rl:
            self.offline_rl = train_offline_rl(
                log, self.stats, cfg.cmax, steps.horizon, cost, cfg.offline, steps.steps_left
            )
            self.offline_rl.save(run.run_dir / OFFLINE_RL_FILE)
            algo = f"CQL alpha={cfg.offline.alpha}" if cfg.offline.alpha > 0 else "double DQN"
            run.notes.append(
                f"offline deep RL: {algo}, {cfg.offline.steps} steps, budget in the state"
            )
            run.lap("offline rl")

    def _lagrangian(self, run: Run, steps: Steps, p2: Phase2, points: Any) -> None:
        from helpseek_core.lagrangian import search_penalty

        cfg, model = self.cfg, p2.model
        sols = {}
        for c in range(steps.cost, cfg.cmax + 1):
            try:
                sols[c] = search_penalty(model, c)
            except SolverError as exc:  # reported, not fatal: the comparator loses one budget
                self.lag_info[f"error_C{c}"] = str(exc)
                run.say(f"Lagrangian search failed for C={c}: {exc}")
                run.notes.append(
                    f"Lagrangian search failed for C={c} ({exc}); its helper interpolates"
                )
        self.lag_info.update(
            {
                str(c): {"penalty": s.penalty, "usage": s.usage, "success": s.success}
                for c, s in sols.items()
            }
        )
        if sols:
            lrows = lagrangian_rows(
                points, model, sols, self.stats, cfg.cmax, steps.horizon, steps.cost, cfg.helper
            )
            lmlp = fit_helper(lrows, cfg.helper, cfg.progress)
            self.fit["lagrangian_helper"] = row_accuracy(lmlp, lrows, cfg.helper.threshold)
            save_helper_npz(run.run_dir / LAGRANGIAN_FILE, lmlp, self.stats, sorted(sols))
            self.lag_helper = Helper(
                lmlp, self.stats, cfg.cmax, steps.horizon, steps.cost, cfg.helper.threshold
            )

    def policies(self, run: Run, steps: Steps, p2: Phase2) -> PolicySet:
        """Return the helper, PRM, comparators and the training log (threshold calibration)."""
        return PolicySet(
            k=steps.k,
            cost=steps.cost,
            helper=self.helper,
            prm=self.prm,
            lagrangian=self.lag_helper,
            offline_rl=self.offline_rl,
            log=steps.log,
        )

    def finish_metrics(self, metrics: dict[str, Any], run: Run, steps: Steps) -> None:
        """Nothing to add: every feature policy is in ``evaluate``'s set."""

    def offline(self, run: Run, steps: Steps, p2: Phase2) -> dict[str, Any] | None:
        """Offline evaluation on the held-out episodes (model-based and importance sampling)."""
        from training.offline_eval import offline_evaluation

        return offline_evaluation(
            steps,
            self.helper,
            self.prm,
            p2.model,
            n_min=self.cfg.model.n_min,
            leaf=self.cfg.model.leaf,
            timeout_failure=p2.timeout_failure,
            budgets=self.cfg.evaluation.budgets,
            out=run.dir / "report",
            bootstrap=self.cfg.offline_bootstrap,
        )

    def manifest(self, steps: Steps, p2: Phase2) -> dict[str, Any]:
        """Feature schema, helper constants and fit, the DP's target intervention rate."""
        return {
            "feature_schema": {"names": list(steps.feature_names), "dim": steps.log.feature_dim},
            "helper": {"threshold": self.cfg.helper.threshold, "fit": self.fit["helper"]},
            "target_intervention_rate": [float(r) for r in self.rate],
            "dp": {"lagrangian": self.lag_info},
        }

    def write(self, directory: Path, manifest: dict[str, Any]) -> None:
        """helper.npz + prm.npz, then load the artifact back through the service's loader."""
        arrays = {
            "helper.npz": {**self.mlp.to_arrays(), **self.stats.to_arrays()},
            PRM_FILE: self.prm_arrays,
        }
        write_artifact(directory, manifest, arrays)
        Helper.from_artifact(load_artifact(directory))  # refuse an artifact that won't load

    def training_info(self) -> dict[str, Any]:
        """Return the helper fit figures and the Lagrangian search results."""
        return {"fit": self.fit, "lagrangian": self.lag_info}


def source_for(cfg: TrainConfig) -> StepSource:
    """Return the step source a config asks for: a log (``cfg.log``) or live collection."""
    if cfg.log is not None:
        return LogSource(cfg.log, cfg.env, cfg.k, cfg.cost, cfg.test_fraction, cfg.split_seed)
    assert cfg.env is not None  # __post_init__
    return LiveSource(
        CollectConfig(
            env=cfg.env,
            out=cfg.out,
            train_seeds=cfg.train_seeds,
            test_seeds=cfg.test_seeds,
            episodes_per_seed=cfg.episodes_per_seed,
            k=cfg.k or 1,
            cost=cfg.cost or 1,
            workers=cfg.workers,
            progress=cfg.progress,
        )
    )


def main(cfg: TrainConfig) -> Path:
    """Run every stage into ``cfg.out``; return the artifact directory."""
    settings = RunSettings(
        out=cfg.out,
        cmax=cfg.cmax,
        n_min=cfg.model.n_min,
        leaf=cfg.model.leaf,
        timeout_failure=cfg.model.timeout_failure,
        evaluation=cfg.evaluation,
        progress=cfg.progress,
        torch_threads=cfg.torch_threads,
        config=cfg.to_dict(),
        name="train",
    )
    return train(settings, source_for(cfg), FeatureRepresentation(cfg))


# ---- command line: derived from the dataclasses ----------------------------------------------

ALIASES = {
    "model.n_min": "--n-min",
    "model.lagrangian": "--lagrangian",
    "model.offline_rl": "--offline-rl",
    "model.timeout_failure": "--timeout-failure",
    "model.leaf": "--leaf",
    "evaluation.budgets": "--budgets",
    "evaluation.episodes": "--episodes",
    "evaluation.n_tasks": "--eval-tasks",
    "evaluation.calibration": "--calibration",
    "evaluation.train_seed_check": "--train-seed-check",
    "evaluation.allow_failed_checks": "--allow-failed-checks",
}
"""Flags kept short (and as they were before the parser was derived)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek train``: every field of :class:`TrainConfig` (nested too)."""
    parser.add_argument(
        "--default",
        action="store_true",
        help="start from the built-in default (Taxi, ~1 minute); flags override it",
    )
    add_dataclass_arguments(parser, TrainConfig, skip=("prm",), aliases=ALIASES)


def from_args(ns: argparse.Namespace) -> TrainConfig:
    """Build the config from parsed ``helpseek train`` arguments (given flags only)."""
    given = {k: v for k, v in vars(ns).items() if k not in ("command", "default")}
    if ns.default:
        if given.get("env") is not None or given.get("log") is not None:
            raise ValueError("helpseek train: --default chooses the env; drop --env / --log")
        return from_namespace(TrainConfig, given, base=default_config(given["out"]))
    if given.get("env") is None and given.get("log") is None:
        raise ValueError("helpseek train: give --env SPEC, --log DIR (or both), or --default")
    return from_namespace(TrainConfig, given)
