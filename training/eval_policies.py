"""What the live evaluation runs: its settings, the policy set, one cell, the decide callbacks.

:func:`run_cell` plays ``episodes`` live episodes of one policy at one hard budget through the
one episode runner. The decide callbacks adapt each policy (helper, DP oracle table, offline
RL, the baseline registry of :mod:`helpseek_core.baselines`) to the runner's context.
Calibration: thresholds per budget, either to a rate on the logged states or by a live search
on *training* seeds; random interventions matched to a policy's **interventions per
episode** by a live search on training seeds (:func:`match_random_rate`), so that random and
the policy it is compared with spend the same help.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from helpseek_core.baselines import BatchContext, DecisionContext, calibrate, make_policy
from helpseek_core.helper import Helper
from helpseek_core.prm import MLPPRM
from helpseek_core.types import BudgetedSolution, StepLog, TabularModel
from training.envs import EnvAdapter, episode_rng, run_episode
from training.envs.runner import DecisionContext as RunContext
from training.offline_rl import OfflineQPolicy

__all__ = [
    "Decide",
    "EvalConfig",
    "PolicySet",
    "baseline_decide",
    "helper_decide",
    "log_contexts",
    "match_random_rate",
    "offline_decide",
    "oracle_decide",
    "run_cell",
    "search_params",
]

Decide = Callable[[RunContext], bool]


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
    calibration: Literal["rate", "search"] = "rate"
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
    allow_failed_checks: bool = False
    """Exit 0 even when a self-check of the report fails (the failures are still printed)."""


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


def _budget(ctx: RunContext) -> int:
    """Return the remaining budget at a decision point (evaluation episodes always have one)."""
    if ctx.remaining_budget is None:
        raise ValueError("evaluation decide callbacks need a budgeted episode (budget=None)")
    return int(ctx.remaining_budget)


# ---- decide callbacks ------------------------------------------------------------------------


def helper_decide(helper: Helper, fixed: int | None = None) -> Decide:
    """Ask the helper with the remaining budget (the encoding clips it to the helper's Cmax).

    ``fixed`` replaces the remaining budget by a constant: the Lagrangian helper is asked with
    the episode's starting budget C (its labels depend on C, not on what is left).
    """

    def decide(ctx: RunContext) -> bool:
        c = _budget(ctx) if fixed is None else fixed
        return helper.decide(ctx.features, c, ctx.steps_left).intervene

    return decide


def offline_decide(q: OfflineQPolicy) -> Decide:
    """Decide callback of the offline deep-RL comparator (budget in its state)."""

    def decide(ctx: RunContext) -> bool:
        return q.decide(ctx.features, _budget(ctx), ctx.steps_left)

    return decide


def baseline_decide(
    name: str, params: dict[str, Any], ps: PolicySet, rng: np.random.Generator
) -> Decide:
    """Decide callback of a baseline-registry policy (PRM scores computed when it has a PRM)."""
    policy = make_policy(name, **params)
    prm = ps.prm

    def decide(ctx: RunContext) -> bool:
        scores = prm.score(ctx.features[None])[0] if prm is not None else None
        dctx = DecisionContext(
            t=ctx.t,
            steps_left=max(ctx.steps_left, 0),
            remaining=_budget(ctx),
            cost=ps.cost,
            features=ctx.features,
            prm=scores,
        )
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
            t=ctx.t,
            steps_left=max(ctx.steps_left, 0),
            remaining=_budget(ctx),
            cost=ps.cost,
            state_index=idx,
        )
        return policy.decide(dctx, rng)

    return decide


# ---- calibration -----------------------------------------------------------------------------


def log_contexts(ps: PolicySet) -> BatchContext | None:
    """Return the training log's rows as baseline contexts (threshold calibration), or None."""
    if ps.log is None or ps.prm is None:
        return None
    log = ps.log
    return BatchContext(
        t=log.t,
        steps_left=np.zeros(len(log), np.int64),
        remaining=np.full(len(log), 10**6),
        cost=ps.cost,
        features=log.features,
        prm=ps.prm.score(log.features),
    )


def search_params(
    adapter: EnvAdapter,
    name: str,
    budget: int,
    ps: PolicySet,
    ctxs: BatchContext,
    cfg: EvalConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Best-success threshold among ``cfg.search_rates``, measured live on training seeds."""
    best: tuple[float, dict[str, float]] = (-1.0, calibrate(name, ctxs, 0.0))
    for q in cfg.search_rates:
        params = calibrate(name, ctxs, float(q))
        out = run_cell(
            adapter,
            baseline_decide(name, params, ps, rng),
            budget,
            ps.k,
            ps.cost,
            cfg.search_episodes,
            cfg.train_seed_start,
            cfg.train_n_tasks,
            cfg.root_seed + 1,
        )
        s = float(out["success"].mean())
        if s > best[0]:
            best = (s, params)
    return best[1]


def match_random_rate(
    adapter: EnvAdapter,
    target: float,
    budget: int,
    ps: PolicySet,
    cfg: EvalConfig,
    rng: np.random.Generator,
    iterations: int = 10,
) -> tuple[float, float]:
    """Random's per-decision rate whose live interventions per episode match ``target``.

    Bisection on p in [0, 1], each probe ``cfg.search_episodes`` live episodes at ``budget``
    on the *training* seeds (common random numbers across probes, so the measured usage is
    monotone in p up to noise). Returns (p, measured interventions per episode at p); stops
    early once within 2% (or 0.01) of the target. A target at or above what p = 1 reaches
    returns p = 1.
    """
    seed = int(rng.integers(2**31))  # one noise stream for every probe: usage monotone in p

    def usage(p: float) -> float:
        out = run_cell(
            adapter,
            baseline_decide("random", {"rate": p}, ps, np.random.default_rng(seed)),
            budget,
            ps.k,
            ps.cost,
            cfg.search_episodes,
            cfg.train_seed_start,
            cfg.train_n_tasks,
            cfg.root_seed + 2,
        )
        return float(out["interventions"].mean())

    if target <= 0 or budget < ps.cost:
        return 0.0, 0.0
    hi_use = usage(1.0)
    if target >= hi_use:
        return 1.0, hi_use
    lo, hi, best = 0.0, 1.0, (1.0, hi_use)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        u = usage(mid)
        if abs(u - target) < abs(best[1] - target):
            best = (mid, u)
        if abs(u - target) <= max(0.02 * target, 0.01):
            break
        lo, hi = (mid, hi) if u < target else (lo, mid)
    return best
