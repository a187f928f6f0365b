"""Live evaluation: run every intervention policy in the environment on held-out seeds.

Not a replay of logged states: each policy drives real episodes through
:func:`training.envs.run_episode` with a hard budget C (the runner proceeds without asking
once the remaining budget is below the cost), for C in ``EvalConfig.budgets``. All policies
see the same task seeds, weak-agent noise streams and environment dynamics seeds (common
random numbers), so differences between policies are not seed luck.

Policies (:data:`POLICY_LABELS`): never and always (unlimited) as references; random at the
oracle's intervention rate; PRM-threshold and gain-threshold calibrated per budget (to the
oracle's rate on the log, or by a search on *training* seeds); the DP oracle (exact model
where the environment has one); the Lagrangian-labelled helper; the offline deep-RL helper;
and the helper. Metrics: success with a 95% Wilson interval, interventions and decisions per
episode, PGR, APGR, CPT, oracle ratio and budget violations (:mod:`helpseek_core.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from helpseek_core import metrics as M
from helpseek_core.baselines import BatchContext, DecisionContext, calibrate, make_policy
from helpseek_core.budgeted import solve_budgeted
from helpseek_core.helper import Helper
from helpseek_core.prm import MLPPRM
from helpseek_core.types import BudgetedSolution, StepLog, TabularModel
from training.envs import EnvAdapter, episode_rng, run_episode
from training.envs.runner import DecisionContext as RunContext
from training.helper_train import estimate, load_helper_npz, oracle_for
from training.offline_rl import OFFLINE_RL_FILE, OfflineQPolicy
from training.report import cell_metrics, policy_metrics, targets, write_report

__all__ = [
    "LAGRANGIAN_FILE",
    "POLICY_LABELS",
    "ArtifactEvalConfig",
    "add_arguments",
    "from_args",
    "main",
    "oracle_decide",
    "EvalConfig",
    "PolicySet",
    "evaluate",
    "run_cell",
]

POLICY_LABELS = {
    "random": "random (matched rate)",
    "prm_threshold": "PRM-threshold",
    "gain_threshold": "gain-threshold",
    "dp_oracle": "DP oracle",
    "lagrangian_helper": "Lagrangian helper",
    "offline_rl": "offline deep RL",
    "helper": "helper",
    "helper_clipped": "helper (budget input clipped to Cmax)",
}

Decide = Callable[[RunContext], bool]
LAGRANGIAN_FILE = "lagrangian_helper.npz"


@dataclass(frozen=True)
class EvalConfig:
    """Settings of the live evaluation."""

    budgets: tuple[int, ...] = (0, 1, 2, 3, 5, 8)
    """Hard budgets C evaluated for every budgeted policy."""
    episodes: int = 1000
    """Episodes per (policy, budget) cell."""
    seed_start: int = 1_000_000
    """First held-out task seed (collection uses seeds far below this)."""
    n_tasks: int = 1000
    """Distinct held-out task seeds; episode i runs task seed_start + i % n_tasks."""
    root_seed: int = 20_250_204
    """Root of the per-episode noise and dynamics seeds (same for every policy)."""
    calibration: str = "rate"
    """How thresholds are calibrated per budget: 'rate' (match the oracle's intervention
    rate per decision on the logged states; cheap) or 'search' (best success over a grid of
    thresholds, measured live on training seeds)."""
    search_rates: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
    """'search' calibration: per-decision intervention rates (on the log) whose thresholds
    are tried per budget; 1.0 = intervene at every decision until the budget is spent."""
    search_episodes: int = 200
    """'search' calibration: episodes per tried threshold (on training seeds)."""
    train_seed_start: int = 0
    """First *training* task seed (for 'search' calibration and the train-seed check)."""
    train_n_tasks: int = 200
    """Training task seeds used by 'search' calibration and the train-seed check."""
    train_seed_check: bool = False
    """Also run the helper and the oracle on the *training* task seeds (the seen-vs-unseen drop)."""
    progress: bool = True
    """Show a progress bar per policy."""


@dataclass(eq=False)
class PolicySet:
    """What the evaluation can run; a missing entry is skipped (and said so in the notes)."""

    k: int
    cost: int
    helper: Helper | None = None
    prm: MLPPRM | None = None
    oracle_model: TabularModel | None = None
    oracle: BudgetedSolution | None = None
    oracle_kind: str = "none"  # "exact" | "estimated" | "none"
    lagrangian: Helper | None = None  # input budget = the episode's starting budget C
    offline_rl: OfflineQPolicy | None = None
    log: StepLog | None = None  # the training log (threshold calibration)
    notes: list[str] = field(default_factory=list)


def run_cell(
    adapter: EnvAdapter,
    decide: Decide | float,
    budget: int | None,
    k: int,
    cost: int,
    episodes: int,
    seed_start: int,
    n_tasks: int,
    root_seed: int,
) -> dict[str, np.ndarray]:
    """Run ``episodes`` live episodes of one policy at one budget; per-episode outcome arrays."""
    succ = np.zeros(episodes, bool)
    used = np.zeros(episodes, np.int64)
    decisions = np.zeros(episodes, np.int64)
    for i in range(episodes):
        task = seed_start + i % n_tasks
        rng, dyn = episode_rng(root_seed, task, i // n_tasks)
        ep = run_episode(
            adapter, task, decide, rng=rng, k=k, cost=cost, budget=budget, dynamics_seed=dyn
        )
        succ[i], used[i], decisions[i] = ep.success, ep.interventions, len(ep)
    return {"success": succ, "interventions": used, "decisions": decisions}


# ---- decide callbacks ------------------------------------------------------------------------


def _helper_decide(helper: Helper, fixed: int | None = None, clip: int | None = None) -> Decide:
    """Ask the helper with the remaining budget, clipped to ``clip`` if given.

    ``fixed`` replaces the remaining budget by a constant: the Lagrangian helper is asked with
    the episode's starting budget C (its labels depend on C, not on what is left).
    """

    def decide(ctx: RunContext) -> bool:
        c = int(ctx.remaining_budget) if fixed is None else fixed
        if clip is not None:
            c = min(c, clip)
        return helper.decide(ctx.features, c, ctx.steps_left).intervene

    return decide


def _offline_decide(q: OfflineQPolicy) -> Decide:
    def decide(ctx: RunContext) -> bool:
        return q.decide(ctx.features, int(ctx.remaining_budget), ctx.steps_left)

    return decide


def _baseline_decide(
    name: str, params: dict[str, Any], ps: PolicySet, rng: np.random.Generator
) -> Decide:
    policy = make_policy(name, **params)
    prm = ps.prm

    def decide(ctx: RunContext) -> bool:
        scores = prm.score(ctx.features[None])[0] if prm is not None else None
        dctx = DecisionContext(
            t=ctx.t, steps_left=max(ctx.steps_left, 0), remaining=int(ctx.remaining_budget),
            cost=ps.cost, features=ctx.features, prm=scores,
        )  # fmt: skip
        return policy.decide(dctx, rng)

    return decide


def oracle_decide(ps: PolicySet) -> Decide:
    """Decide callback of the DP oracle: its table at the state's index (unknown -> proceed)."""
    if ps.oracle is None or ps.oracle_model is None:
        raise ValueError("oracle_decide: the policy set has no oracle")
    policy = make_policy("dp_table", solution=ps.oracle)
    keys = ps.oracle_model.state_keys
    rng = np.random.default_rng(0)

    def decide(ctx: RunContext) -> bool:
        j = int(np.searchsorted(keys, ctx.state_key))
        idx = j if j < keys.shape[0] and keys[j] == ctx.state_key else None
        dctx = DecisionContext(
            t=ctx.t, steps_left=max(ctx.steps_left, 0), remaining=int(ctx.remaining_budget),
            cost=ps.cost, state_index=idx,
        )  # fmt: skip
        return policy.decide(dctx, rng)

    return decide


# ---- calibration -----------------------------------------------------------------------------


def _log_contexts(ps: PolicySet) -> BatchContext | None:
    if ps.log is None or ps.prm is None:
        return None
    log = ps.log
    return BatchContext(
        t=log.t, steps_left=np.zeros(len(log), np.int64), remaining=np.full(len(log), 10**6),
        cost=ps.cost, features=log.features, prm=ps.prm.score(log.features),
    )  # fmt: skip


def _search_params(
    adapter: EnvAdapter, name: str, budget: int, ps: PolicySet, ctxs: BatchContext,
    cfg: EvalConfig, rng: np.random.Generator,
) -> dict[str, float]:  # fmt: skip
    """Best-success threshold among ``cfg.search_rates``, measured live on training seeds."""
    best: tuple[float, dict[str, float]] = (-1.0, calibrate(name, ctxs, 0.0))
    for q in cfg.search_rates:
        params = calibrate(name, ctxs, float(q))
        out = run_cell(
            adapter, _baseline_decide(name, params, ps, rng), budget, ps.k, ps.cost,
            cfg.search_episodes, cfg.train_seed_start, cfg.train_n_tasks, cfg.root_seed + 1,
        )  # fmt: skip
        s = float(out["success"].mean())
        if s > best[0]:
            best = (s, params)
    return best[1]


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

    def run(name: str, make: Callable[[int], Decide], copy: dict[int, dict] | None = None) -> None:
        """Run ``name`` at every budget (cells given in ``copy`` are identical: reused)."""
        cells = []
        bar = tqdm(cfg.budgets, desc=f"eval {name}", disable=not cfg.progress, leave=False)
        for b in bar:
            if copy and b in copy:
                cells.append(dict(copy[b]))
                continue
            cells.append(cell_metrics(run_cell(adapter, make(b), b, ps.k, ps.cost, *cell_args), b))
        policies[name] = cells

    oracle_rate: dict[int, float] = {}
    if ps.oracle is not None and ps.oracle_model is not None:
        run("dp_oracle", lambda b: oracle_decide(ps))
        if ps.oracle_kind == "exact":
            oracle_rate = {c["budget"]: c["intervention_rate"] for c in policies["dp_oracle"]}
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
        run("helper", lambda b: _helper_decide(ps.helper))  # type: ignore[arg-type]
        if max(cfg.budgets) > ps.helper.cmax:
            top = ps.helper.cmax  # below it the decisions, hence the episodes, are the same
            same = {c["budget"]: c for c in policies["helper"] if c["budget"] <= top}
            run("helper_clipped", lambda b: _helper_decide(ps.helper, clip=top), same)  # type: ignore[arg-type]
    if ps.lagrangian is not None:
        lag = ps.lagrangian  # asked with the episode budget, clipped to the largest trained
        run("lagrangian_helper", lambda b: _helper_decide(lag, min(b, lag.cmax)))  # type: ignore[union-attr]
    if ps.offline_rl is not None:
        run("offline_rl", lambda b: _offline_decide(ps.offline_rl))  # type: ignore[arg-type]
    if not oracle_rate:
        # No exact oracle: match the helper's rate instead (documented in the notes).
        src = policies.get("helper") or []
        oracle_rate = {c["budget"]: c["intervention_rate"] for c in src}
        notes.append("matched rates come from the helper (no exact oracle)")
    if oracle_rate:
        run("random", lambda b: _baseline_decide("random", {"rate": oracle_rate[b]}, ps, rng))
    ctxs = _log_contexts(ps)
    if ctxs is not None and oracle_rate:
        for name in ("prm_threshold", "gain_threshold"):
            params: dict[int, dict[str, float]] = {}
            for b in cfg.budgets:
                if cfg.calibration == "search" and b >= ps.cost:
                    params[b] = _search_params(adapter, name, b, ps, ctxs, cfg, rng)
                else:
                    params[b] = calibrate(name, ctxs, oracle_rate[b])
            run(name, lambda b, n=name, p=params: _baseline_decide(n, p[b], ps, rng))  # type: ignore[misc]
            notes.append(f"{name} parameters per budget ({cfg.calibration}): {params}")
    else:
        notes.append("threshold baselines skipped: no PRM or no training log given")
    seen: dict[str, dict[str, Any]] = {}
    if cfg.train_seed_check:
        args = (cfg.episodes, cfg.train_seed_start, cfg.train_n_tasks, cfg.root_seed)
        makers: dict[str, Callable[[], Decide]] = {}
        if ps.helper is not None:
            makers["helper"] = lambda: _helper_decide(ps.helper)  # type: ignore[arg-type]
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
        "seeds": {
            "start": cfg.seed_start, "n_tasks": cfg.n_tasks, "root": cfg.root_seed,
            "description": f"task seeds {cfg.seed_start}..{cfg.seed_start + cfg.n_tasks - 1}",
        },  # fmt: skip
        "reference": ref,
        "train_seeds": {
            "start": cfg.train_seed_start, "n_tasks": cfg.train_n_tasks, "cells": seen,
        },  # fmt: skip
        "policies": out_pol,
        "notes": notes,
    }
    metrics["targets"] = targets(metrics)
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
            ps.log, ps.prm, int(m["horizon"]), k, cost, int(mcfg.get("n_min", 1)),
            str(mcfg.get("leaf", "prm")), bool(m.get("dp", {}).get("timeout_failure", False)),
        )  # fmt: skip
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
    write_report(metrics, out, title=f"HelpSeek evaluation of {art.artifact_id}")
    print(f"[helpseek evaluate] report written to {out / 'report.md'}", flush=True)
    return out


def add_arguments(parser: Any) -> None:
    """Arguments of ``helpseek evaluate``."""
    parser.add_argument("--artifact", required=True, type=Path, help="artifact directory")
    parser.add_argument("--env", required=True, help="env spec to evaluate in")
    parser.add_argument("--out", type=Path, help="report directory")
    parser.add_argument("--budgets", default="0,1,2,3,5,8", help="budgets, e.g. 0,1,2,3,5,8")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per cell")
    parser.add_argument("--eval-tasks", type=int, default=1000, help="distinct held-out seeds")
    parser.add_argument("--seed-start", type=int, default=1_000_000, help="first held-out seed")
    parser.add_argument("--calibration", choices=("rate", "search"), default="rate")
    parser.add_argument("--no-progress", action="store_true")


def from_args(ns: Any) -> ArtifactEvalConfig:
    """Build the config from parsed ``helpseek evaluate`` arguments."""
    ev = replace(
        EvalConfig(), budgets=tuple(int(b) for b in ns.budgets.split(",")), episodes=ns.episodes,
        n_tasks=ns.eval_tasks, seed_start=ns.seed_start, calibration=ns.calibration,
        progress=not ns.no_progress,
    )  # fmt: skip
    return ArtifactEvalConfig(artifact=ns.artifact, env=ns.env, out=ns.out, evaluation=ev)
