"""``helpseek train``: the whole method, top to bottom, into one run directory.

    collect -> PRM -> model estimate -> exact DP -> labels -> helper (+ Lagrangian helper,
    + offline-RL comparator) -> live evaluation -> artifact export

Output directory (``--out DIR``)::

    DIR/manifest.json, helper.npz, prm.npz     the artifact the service loads
    DIR/config.json                            the resolved configuration of this run
    DIR/report/                                report.md, metrics.json, plots
    DIR/run/log/                               Phase I step log (Parquet + manifest)
    DIR/run/prm/                               PRM and its calibration report
    DIR/run/lagrangian_helper.npz, offline_q.npz   comparators (``helpseek evaluate`` reuses them)
    DIR/run/training.json                      stage timings and helper fit figures

Every stage's settings live in a frozen dataclass with a docstring per field (``config.py``,
``helper_train.HelperConfig``, ``offline_rl.OfflineRLConfig``, ``evaluate.EvalConfig``,
:class:`ModelConfig`, :class:`TrainConfig`); the resolved config goes to ``config.json`` and
into the manifest's ``training_config``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import SolverError
from helpseek_core.helper import FeatureStats, Helper
from helpseek_core.occupancy import dp_intervention_rate
from helpseek_core.prm import MLPPRM, PRM_FILE
from training import collect as collect_stage
from training import prm as prm_stage
from training.config import CollectConfig, PRMConfig
from training.envs import make_env
from training.evaluate import LAGRANGIAN_FILE, EvalConfig, PolicySet, evaluate
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
from training.phase2 import estimate, oracle_for, task_steps_left
from training.report import manifest_summary, write_report
from training.steplog_io import read_steplog

__all__ = [
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

    env: str
    """Environment spec (``make_env`` grammar, as for ``helpseek collect``)."""
    out: Path
    """Run / artifact directory."""
    cmax: int = 5
    """Largest budget the helper is trained for (labels for every c <= cmax)."""
    k: int = 1
    """Env steps per intervention (the expert's macro action)."""
    cost: int = 1
    """Budget units per intervention."""
    train_seeds: tuple[int, ...] = tuple(range(100))
    """Task seeds collected for training."""
    test_seeds: tuple[int, ...] = tuple(range(10_000, 10_020))
    """Task seeds of the collection's held-out split (PRM calibration)."""
    episodes_per_seed: int = 22
    """Collection rollouts per task seed (p cycles over the p grid)."""
    workers: int = 2
    """Collection worker processes."""
    prm: PRMConfig | None = None
    """PRM settings (``log`` / ``out`` are filled in by the pipeline)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Phase II settings."""
    helper: HelperConfig = field(default_factory=HelperConfig)
    """Phase III settings."""
    offline: OfflineRLConfig = field(default_factory=OfflineRLConfig)
    """Offline deep-RL comparator settings."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Live evaluation settings."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for these small MLPs (2 threads on a busy
    2-core machine ran 10x slower in our measurement)."""
    progress: bool = True
    """Progress bars."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config."""
        d = asdict(self)
        d["out"] = str(self.out)
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


# ---- small helpers ---------------------------------------------------------------------------


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _say(msg: str) -> None:
    print(f"[helpseek train] {msg}", flush=True)


# ---- the pipeline ----------------------------------------------------------------------------


def main(cfg: TrainConfig) -> Path:
    """Run every stage into ``cfg.out``; return the artifact directory."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.out)
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    timings: dict[str, float] = {}
    notes: list[str] = []
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        _say(f"{stage} done in {timings[stage]:.1f}s")
        clock = now

    # Phase I: collect and PRM
    ccfg = CollectConfig(
        env=cfg.env, out=run_dir / "log", train_seeds=cfg.train_seeds, test_seeds=cfg.test_seeds,
        episodes_per_seed=cfg.episodes_per_seed, k=cfg.k, cost=cfg.cost, workers=cfg.workers,
        progress=cfg.progress,
    )  # fmt: skip
    log_dir = collect_stage.main(ccfg, log=_say)
    lap("collect")
    pcfg = replace(cfg.prm or PRMConfig(log=log_dir, out=run_dir / "prm"), log=log_dir,
                   out=run_dir / "prm", progress=cfg.progress)  # fmt: skip
    prm_dir = prm_stage.main(pcfg, log_fn=_say)
    with np.load(Path(prm_dir) / PRM_FILE, allow_pickle=False) as npz:
        prm_arrays = {k: npz[k] for k in npz.files}
    prm = MLPPRM.from_arrays(prm_arrays, str(Path(prm_dir) / PRM_FILE))
    lap("prm")

    log, log_manifest = read_steplog(log_dir, split="train")
    adapter = make_env(cfg.env)
    horizon, steps_left = task_steps_left(log, adapter)

    # Phase II: model and exact DP
    per_task = bool(np.any((steps_left + log.t) != horizon))
    timeout_failure = cfg.model.timeout_failure == "yes" or (
        cfg.model.timeout_failure == "auto" and per_task
    )
    if timeout_failure:
        notes.append("model: time-outs counted as failure terminals (per-task step limits)")
    model = estimate(
        log, prm, horizon, cfg.k, cfg.cost, cfg.model.n_min, cfg.model.leaf, timeout_failure
    )
    cmax_eval = max(cfg.cmax, *cfg.evaluation.budgets)
    solution = solve_budgeted(model, cfg.cmax)
    rate = dp_intervention_rate(model, solution)
    lap("model+dp")

    # Phase III: helper (+ comparators)
    stats = FeatureStats.fit(log.features)
    points = decision_points(log, model, steps_left)
    rows = budgeted_rows(points, model, solution, stats, horizon, cfg.cost, cfg.helper)
    mlp = fit_helper(rows, cfg.helper, cfg.progress)
    fit = {"helper": row_accuracy(mlp, rows, cfg.helper.threshold)}
    helper = Helper(mlp, stats, cfg.cmax, horizon, cfg.cost, cfg.helper.threshold)
    lap("helper")
    lag_helper = None
    lag_info: dict[str, Any] = {}
    if cfg.model.lagrangian:
        from helpseek_core.lagrangian import search_penalty

        sols = {}
        for c in range(cfg.cost, cfg.cmax + 1):
            try:
                sols[c] = search_penalty(model, c)
            except SolverError as exc:  # reported, not fatal: the comparator loses one budget
                lag_info[f"error_C{c}"] = str(exc)
                _say(f"Lagrangian search failed for C={c}: {exc}")
                notes.append(f"Lagrangian search failed for C={c} ({exc}); its helper interpolates")
        lag_info.update({str(c): {"penalty": s.penalty, "usage": s.usage, "success": s.success}
                         for c, s in sols.items()})  # fmt: skip
        if sols:
            lrows = lagrangian_rows(points, model, sols, stats, cfg.cmax, horizon, cfg.cost, cfg.helper)
            lmlp = fit_helper(lrows, cfg.helper, cfg.progress)
            fit["lagrangian_helper"] = row_accuracy(lmlp, lrows, cfg.helper.threshold)
            save_helper_npz(run_dir / LAGRANGIAN_FILE, lmlp, stats, sorted(sols))
            lag_helper = Helper(lmlp, stats, cfg.cmax, horizon, cfg.cost, cfg.helper.threshold)
        lap("lagrangian helper")
    offline = None
    if cfg.model.offline_rl:
        offline = train_offline_rl(log, stats, cfg.cmax, horizon, cfg.cost, cfg.offline, steps_left)
        offline.save(run_dir / OFFLINE_RL_FILE)
        algo = f"CQL alpha={cfg.offline.alpha}" if cfg.offline.alpha > 0 else "double DQN"
        notes.append(f"offline deep RL: {algo}, {cfg.offline.steps} steps, budget in the state")
        lap("offline rl")

    # Live evaluation on held-out seeds
    o_model, o_sol, o_kind = oracle_for(adapter, cfg.k, cfg.cost, cmax_eval, (model, solution))
    ps = PolicySet(
        k=cfg.k, cost=cfg.cost, helper=helper, prm=prm, oracle_model=o_model, oracle=o_sol,
        oracle_kind=o_kind, lagrangian=lag_helper, offline_rl=offline, log=log, notes=notes,
    )  # fmt: skip
    ev = replace(cfg.evaluation, progress=cfg.progress)
    seeds = sorted(cfg.train_seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):  # calibrate / check on these
        ev = replace(ev, train_seed_start=seeds[0], train_n_tasks=len(seeds))
    metrics = evaluate(adapter, ps, ev, cmax=cfg.cmax)
    metrics["dp_predicted"] = {
        "estimated_model_success": solution.success.tolist(),
        "estimated_model_usage": solution.usage.tolist(),
        "oracle_kind": o_kind,
        "oracle_success": None if o_sol is None else o_sol.success.tolist(),
        "oracle_usage": None if o_sol is None else o_sol.usage.tolist(),
    }
    write_report(metrics, out / "report", title="HelpSeek evaluation")
    lap("evaluate")

    # Export
    summary = manifest_summary(metrics)
    manifest = {
        "artifact_id": f"{adapter.spec.split(':')[0].lower()}-{uuid.uuid4().hex[:12]}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
        "kind": "features",
        "feature_schema": {"names": list(adapter.feature_names), "dim": log.feature_dim},
        "cmax": cfg.cmax,
        "horizon": horizon,
        "k": cfg.k,
        "cost": cfg.cost,
        "env": adapter.spec,
        "agent": adapter.agent,
        "expert": adapter.expert,
        "helper": {"threshold": cfg.helper.threshold, "fit": fit["helper"]},
        "target_intervention_rate": [float(r) for r in rate],
        "dp": {"success": solution.success.tolist(), "usage": solution.usage.tolist(),
               "states": model.n_states, "lagrangian": lag_info,
               "timeout_failure": timeout_failure},  # fmt: skip
        "evaluation": summary,
        "training_config": cfg.to_dict(),
        "collection": {k: log_manifest.get(k) for k in ("schema_version", "env", "agent", "expert")},
    }
    write_artifact(
        out, manifest, {"helper.npz": {**mlp.to_arrays(), **stats.to_arrays()}, PRM_FILE: prm_arrays}
    )
    Helper.from_artifact(load_artifact(out))  # refuse to finish with an artifact that won't load
    lap("export")
    (run_dir / "training.json").write_text(
        json.dumps({"timings_s": timings, "fit": fit, "lagrangian": lag_info}, indent=2)
    )
    _say(f"artifact written to {out} (report: {out / 'report' / 'report.md'})")
    from training.selfcheck import enforce_checks

    enforce_checks(metrics, out / "report" / "report.md", allow=ev.allow_failed_checks)
    return out


# ---- command line ----------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Arguments of ``helpseek train`` (unset options keep the config's defaults)."""
    parser.add_argument("--env", help="env spec (preset, toy_text id or BabyAI id)")
    parser.add_argument("--default", action="store_true", help="the built-in default env + config")
    parser.add_argument("--out", required=True, type=Path, help="run / artifact directory")
    parser.add_argument("--cmax", type=int, help="largest budget trained for (default 5)")
    parser.add_argument("--k", type=int, help="expert steps per intervention (default 1)")
    parser.add_argument("--cost", type=int, help="budget units per intervention (default 1)")
    parser.add_argument("--train-seeds", help="collection train pool, e.g. 0-99")
    parser.add_argument("--test-seeds", help="collection held-out pool, e.g. 10000-10019")
    parser.add_argument("--episodes-per-seed", type=int, help="collection rollouts per seed")
    parser.add_argument("--workers", type=int, help="collection worker processes")
    parser.add_argument("--n-min", type=int, help="visits below which a pair is a PRM leaf")
    parser.add_argument("--helper-epochs", type=int, help="helper training epochs")
    parser.add_argument("--offline-steps", type=int, help="offline-RL gradient steps")
    parser.add_argument("--no-lagrangian", action="store_true", help="skip the Lagrangian helper")
    parser.add_argument("--no-offline-rl", action="store_true", help="skip the offline-RL helper")
    _add_eval_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")


def _add_eval_arguments(parser: Any) -> None:
    parser.add_argument("--budgets", help="evaluation budgets, e.g. 0,1,2,3,5,8")
    parser.add_argument("--episodes", type=int, help="evaluation episodes per (policy, budget)")
    parser.add_argument("--eval-tasks", type=int, help="distinct held-out task seeds")
    parser.add_argument("--calibration", choices=("rate", "search"), help="threshold calibration")
    parser.add_argument("--train-seed-check", action="store_true",
                        help="also run helper and oracle on the training seeds")  # fmt: skip
    parser.add_argument("--allow-failed-checks", action="store_true",
                        help="exit 0 even when a report self-check fails (still printed)")  # fmt: skip


def _eval_overrides(ns: Any, base: EvalConfig) -> EvalConfig:
    over: dict[str, Any] = {}
    if ns.budgets:
        over["budgets"] = tuple(int(b) for b in ns.budgets.split(","))
    if ns.episodes:
        over["episodes"] = ns.episodes
    if ns.eval_tasks:
        over["n_tasks"] = ns.eval_tasks
    if ns.calibration:
        over["calibration"] = ns.calibration
    if ns.train_seed_check:
        over["train_seed_check"] = True
    if getattr(ns, "allow_failed_checks", False):
        over["allow_failed_checks"] = True
    return replace(base, **over)


def from_args(ns: Any) -> TrainConfig:
    """Build the config from parsed ``helpseek train`` arguments."""
    from training.config import parse_seeds

    if ns.default == bool(ns.env):
        raise ValueError("helpseek train: give exactly one of --env SPEC or --default")
    cfg = default_config(ns.out) if ns.default else TrainConfig(env=ns.env, out=ns.out)
    over: dict[str, Any] = {}
    for name in ("cmax", "k", "cost", "episodes_per_seed", "workers"):
        if getattr(ns, name) is not None:
            over[name] = getattr(ns, name)
    if ns.train_seeds:
        over["train_seeds"] = parse_seeds(ns.train_seeds)
    if ns.test_seeds:
        over["test_seeds"] = parse_seeds(ns.test_seeds)
    model = replace(cfg.model, lagrangian=not ns.no_lagrangian, offline_rl=not ns.no_offline_rl)
    if ns.n_min is not None:
        model = replace(model, n_min=ns.n_min)
    helper = cfg.helper if ns.helper_epochs is None else replace(cfg.helper, epochs=ns.helper_epochs)
    offline = cfg.offline if ns.offline_steps is None else replace(cfg.offline, steps=ns.offline_steps)
    return replace(
        cfg, **over, model=model, helper=helper, offline=offline,
        evaluation=_eval_overrides(ns, cfg.evaluation), progress=not ns.no_progress,
    )  # fmt: skip
