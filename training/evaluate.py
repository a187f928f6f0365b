"""Live evaluation: run every intervention policy in the environment on held-out seeds.

Not a replay of logged states: each policy drives real episodes through
:func:`training.envs.run_episode` with a hard budget C (the runner proceeds without asking
once the remaining budget is below the cost), for C in ``EvalConfig.budgets``. All policies
see the same task seeds, weak-agent noise streams and environment dynamics seeds (common
random numbers), so differences between policies are not seed luck.

Policies (:data:`POLICY_LABELS`): never and always (unlimited) as references; random with its
interventions per episode matched to the helper's (the oracle's when there is no helper) by a
live search on training seeds; PRM-threshold and gain-threshold calibrated per budget (to the
oracle's rate on the log, or by a search on *training* seeds); the DP oracle (exact model
where the environment has one); the Lagrangian-labelled helper; the offline deep-RL helper;
and the helper (its budget input clipped to the trained Cmax by the core encoding). Metrics:
success with a 95% Wilson interval, interventions and decisions per episode, PGR, APGR, CPT,
oracle ratio and budget violations (:mod:`helpseek_core.metrics`); the report opens with the
self-checks of :mod:`training.selfcheck`. What runs, and how, is in :mod:`training.eval_policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from helpseek_core import metrics as M
from helpseek_core.baselines import calibrate
from helpseek_core.budgeted import solve_budgeted
from helpseek_core.helper import Helper
from helpseek_core.prm import MLPPRM
from training.envs import EnvAdapter
from training.eval_policies import (
    Decide,
    EvalConfig,
    PolicySet,
    baseline_decide,
    helper_decide,
    log_contexts,
    match_random_rate,
    offline_decide,
    oracle_decide,
    run_cell,
    search_params,
)
from training.helper_train import load_helper_npz
from training.offline_rl import OFFLINE_RL_FILE, OfflineQPolicy
from training.phase2 import estimate, oracle_for
from training.report import cell_metrics, policy_metrics, targets, write_report
from training.selfcheck import enforce_checks, self_checks

__all__ = [
    "LAGRANGIAN_FILE",
    "POLICY_LABELS",
    "ArtifactEvalConfig",
    "EvalConfig",
    "PolicySet",
    "add_arguments",
    "evaluate",
    "from_args",
    "main",
    "oracle_decide",
    "run_cell",
]

POLICY_LABELS = {
    "random": "random (matched interventions/episode)",
    "prm_threshold": "PRM-threshold",
    "gain_threshold": "gain-threshold",
    "dp_oracle": "DP oracle",
    "lagrangian_helper": "Lagrangian helper",
    "offline_rl": "offline deep RL",
    "helper": "helper",
}

LAGRANGIAN_FILE = "lagrangian_helper.npz"


# ---- the evaluation --------------------------------------------------------------------------


def evaluate(
    adapter: EnvAdapter, ps: PolicySet, cfg: EvalConfig, cmax: int | None = None
) -> dict[str, Any]:
    """Run every available policy live for every budget; return the metrics dict (report.py)."""
    cell_args = (cfg.episodes, cfg.seed_start, cfg.n_tasks, cfg.root_seed)
    notes = list(ps.notes)
    rng = np.random.default_rng(cfg.root_seed)
    ref = {
        "never": cell_metrics(run_cell(adapter, 0.0, 0, ps.k, ps.cost, *cell_args), 0),
        "always": cell_metrics(run_cell(adapter, 1.0, None, ps.k, ps.cost, *cell_args), None),
    }
    for r in ref.values():
        r["pgr"] = M.pgr(r["success"], ref["never"]["success"], ref["always"]["success"])
        r["oracle_ratio"] = float("nan")
    policies: dict[str, list[dict[str, Any]]] = {}

    def run(name: str, make: Callable[[int], Decide]) -> None:
        """Run ``name`` at every budget."""
        cells = []
        bar = tqdm(cfg.budgets, desc=f"eval {name}", disable=not cfg.progress, leave=False)
        for b in bar:
            cells.append(cell_metrics(run_cell(adapter, make(b), b, ps.k, ps.cost, *cell_args), b))
        policies[name] = cells

    oracle_rate: dict[int, float] = {}
    prediction: dict[str, dict[str, float]] = {}
    if ps.oracle is not None and ps.oracle_model is not None:
        run("dp_oracle", lambda b: oracle_decide(ps))
        if ps.oracle_kind == "exact":
            oracle_rate = {c["budget"]: c["intervention_rate"] for c in policies["dp_oracle"]}
            top = ps.oracle.cmax
            prediction = {
                str(b): {
                    "success": float(ps.oracle.success[min(b, top)]),
                    "interventions_per_episode": float(ps.oracle.usage[min(b, top)]),
                }
                for b in cfg.budgets
                if b <= top
            }
        else:
            notes.append(
                "DP oracle from the *estimated* model: on held-out seeds it knows no state "
                "(keys include the task seed) and proceeds; see the training-seed check"
            )
        if ps.oracle.cmax < max(cfg.budgets):
            notes.append(f"DP oracle solved up to C={ps.oracle.cmax}; larger budgets use that plan")
    else:
        notes.append("no DP oracle: the environment has no exact model and none was estimated")
    if ps.helper is not None:
        run("helper", lambda b: helper_decide(ps.helper))  # type: ignore[arg-type]
    if ps.lagrangian is not None:
        lag = ps.lagrangian  # asked with the episode budget (the encoding clips it to Cmax)
        run("lagrangian_helper", lambda b: helper_decide(lag, b))
    if ps.offline_rl is not None:
        run("offline_rl", lambda b: offline_decide(ps.offline_rl))  # type: ignore[arg-type]
    if not oracle_rate:
        # No exact oracle: match the helper's rate instead (documented in the notes).
        src = policies.get("helper") or []
        oracle_rate = {c["budget"]: c["intervention_rate"] for c in src}
        notes.append("threshold rates come from the helper (no exact oracle)")
    # Random spends what the policy it is compared with spends: the helper's interventions
    # per episode at each C (the oracle's when there is no helper), searched live on
    # training seeds.
    match_to = (
        "helper" if "helper" in policies else "dp_oracle" if "dp_oracle" in policies else None
    )
    if match_to is not None:
        target = {c["budget"]: c["interventions_per_episode"] for c in policies[match_to]}
        rates = {b: match_random_rate(adapter, target[b], b, ps, cfg, rng) for b in cfg.budgets}
        run("random", lambda b: baseline_decide("random", {"rate": rates[b][0]}, ps, rng))
        notes.append(
            f"random matched to the {POLICY_LABELS[match_to]}'s interventions/episode on "
            "training seeds: "
            + ", ".join(
                f"C={b}: p={p:.4f} ({u:.2f} vs {target[b]:.2f})" for b, (p, u) in rates.items()
            )
        )
    ctxs = log_contexts(ps)
    if ctxs is not None and oracle_rate:
        for name in ("prm_threshold", "gain_threshold"):
            params: dict[int, dict[str, float]] = {}
            for b in cfg.budgets:
                if cfg.calibration == "search" and b >= ps.cost:
                    params[b] = search_params(adapter, name, b, ps, ctxs, cfg, rng)
                else:
                    params[b] = calibrate(name, ctxs, oracle_rate[b])
            run(name, lambda b, n=name, p=params: baseline_decide(n, p[b], ps, rng))  # type: ignore[misc]
            notes.append(f"{name} parameters per budget ({cfg.calibration}): {params}")
    else:
        notes.append("threshold baselines skipped: no PRM or no training log given")
    seen: dict[str, dict[str, Any]] = {}
    if cfg.train_seed_check:
        args = (cfg.episodes, cfg.train_seed_start, cfg.train_n_tasks, cfg.root_seed)
        makers: dict[str, Callable[[], Decide]] = {}
        if ps.helper is not None:
            makers["helper"] = lambda: helper_decide(ps.helper)  # type: ignore[arg-type]
        if "dp_oracle" in policies:
            makers["dp_oracle"] = lambda: oracle_decide(ps)
        for name, make in makers.items():
            seen[name] = {
                str(b): cell_metrics(run_cell(adapter, make(), b, ps.k, ps.cost, *args), b)
                for b in cfg.budgets
            }
    order = ["never", "always", *POLICY_LABELS]
    out_pol: dict[str, Any] = {}
    for name in sorted(policies, key=order.index):
        out_pol[name] = policy_metrics(policies[name], ref["never"], ref["always"])
        out_pol[name]["label"] = POLICY_LABELS[name]
    if "dp_oracle" in out_pol:
        by_b = {c["budget"]: c["success"] for c in out_pol["dp_oracle"]["cells"]}
        for pol in out_pol.values():
            for c in pol["cells"]:
                c["oracle_ratio"] = M.oracle_ratio(c["success"], by_b[c["budget"]])
    else:
        for pol in out_pol.values():
            for c in pol["cells"]:
                c["oracle_ratio"] = float("nan")
    metrics = {
        "env": adapter.spec,
        "budgets": list(cfg.budgets),
        "episodes": cfg.episodes,
        "cmax": cmax,
        "k": ps.k,
        "cost": ps.cost,
        "oracle_kind": ps.oracle_kind,
        "oracle_prediction": prediction,
        "seeds": {
            "start": cfg.seed_start,
            "n_tasks": cfg.n_tasks,
            "root": cfg.root_seed,
            "description": f"task seeds {cfg.seed_start}..{cfg.seed_start + cfg.n_tasks - 1}",
            "train": f"task seeds {cfg.train_seed_start}..{cfg.train_seed_start + cfg.train_n_tasks - 1}",
        },
        "reference": ref,
        "train_seeds": {
            "start": cfg.train_seed_start,
            "n_tasks": cfg.train_n_tasks,
            "cells": seen,
        },
        "policies": out_pol,
        "notes": notes,
    }
    metrics["targets"] = targets(metrics)
    metrics["self_checks"] = self_checks(metrics)
    return metrics


# ---- ``helpseek evaluate --artifact DIR --env SPEC`` ------------------------------------------


@dataclass(frozen=True)
class ArtifactEvalConfig:
    """Evaluate an existing artifact live in an environment."""

    artifact: Path
    """Artifact directory (a ``helpseek train`` output; its ``run/`` comparators are reused)."""
    env: str
    """Environment spec to evaluate in (normally the one it was trained on)."""
    out: Path | None = None
    """Report directory; default ``ARTIFACT/eval-<env id>``."""
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    """Live evaluation settings."""


def main(cfg: ArtifactEvalConfig) -> Path:
    """Load a verified artifact, evaluate it (and its run's comparators) live; write a report."""
    from helpseek_core.artifact import load_artifact
    from training.envs import make_env

    art = load_artifact(cfg.artifact)
    helper = Helper.from_artifact(art)
    m = art.manifest
    k, cost, cmax = int(m["k"]), int(m["cost"]), int(m["cmax"])
    adapter = make_env(cfg.env)
    if len(adapter.feature_names) != art.feature_dim:
        raise ValueError(
            f"{art.path}: artifact expects {art.feature_dim} features, env {cfg.env!r} gives "
            f"{len(adapter.feature_names)}"
        )
    run = art.path / "run"
    ps = PolicySet(k=k, cost=cost, helper=helper, prm=MLPPRM.from_artifact(art))
    if (run / LAGRANGIAN_FILE).is_file():
        ps.lagrangian = load_helper_npz(run / LAGRANGIAN_FILE, helper)
    if (run / OFFLINE_RL_FILE).is_file():
        ps.offline_rl = OfflineQPolicy.load(run / OFFLINE_RL_FILE)
    estimated = None
    if (run / "log" / "manifest.json").is_file():
        from training.steplog_io import read_steplog

        ps.log, _ = read_steplog(run / "log", split="train")
        mcfg = m.get("training_config", {}).get("model", {})
        est = estimate(
            ps.log,
            ps.prm,
            int(m["horizon"]),
            k,
            cost,
            int(mcfg.get("n_min", 1)),
            str(mcfg.get("leaf", "prm")),
            bool(m.get("dp", {}).get("timeout_failure", False)),
        )
        estimated = (est, solve_budgeted(est, cmax))
    else:
        ps.notes.append("no training log beside the artifact: threshold baselines skipped")
    ev = cfg.evaluation
    ps.oracle_model, ps.oracle, ps.oracle_kind = oracle_for(
        adapter, k, cost, max(cmax, *ev.budgets), estimated
    )
    metrics = evaluate(adapter, ps, ev, cmax=cmax)
    metrics["artifact_id"] = art.artifact_id
    out = cfg.out or art.path / f"eval-{adapter.spec.split(':')[0]}"
    report = write_report(metrics, out, title=f"HelpSeek evaluation of {art.artifact_id}")
    print(f"[helpseek evaluate] report written to {report}", flush=True)
    enforce_checks(metrics, report, allow=ev.allow_failed_checks)
    return out


ALIASES = {
    "evaluation.budgets": "--budgets",
    "evaluation.episodes": "--episodes",
    "evaluation.n_tasks": "--eval-tasks",
    "evaluation.seed_start": "--seed-start",
    "evaluation.calibration": "--calibration",
    "evaluation.progress": "--progress",
    "evaluation.allow_failed_checks": "--allow-failed-checks",
}
"""Flags kept short (and as they were before the parser was derived from the dataclasses)."""


def add_arguments(parser: Any) -> None:
    """Arguments of ``helpseek evaluate``: every field of :class:`ArtifactEvalConfig` (nested too)."""
    from training.config import add_dataclass_arguments

    add_dataclass_arguments(parser, ArtifactEvalConfig, aliases=ALIASES)


def from_args(ns: Any) -> ArtifactEvalConfig:
    """Build the config from parsed ``helpseek evaluate`` arguments (given flags only)."""
    from training.config import from_namespace

    given = {k: v for k, v in vars(ns).items() if k != "command"}
    return from_namespace(ArtifactEvalConfig, given)
