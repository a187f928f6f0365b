"""Live evaluation with several intervention types: every policy at every budget vector.

Each cell plays ``episodes`` real episodes through the one episode runner with one hard budget
per type (:func:`run_typed_cell`), common random numbers across policies as in
:mod:`training.eval_policies`. Policies:

- ``typed_helper``: the multi-class helper, asked with every type's remaining budget;
- ``one_type:NAME``: the one-type helper of type NAME given the same budget for its type (and
  none for the others);
- ``typed_oracle``: the typed DP's table (exact model on toy_text; estimated elsewhere, where a
  state it never saw proceeds);
- ``threshold``: per-type gain thresholds — request the type whose estimated gain
  Q_i(s) - Q_0(s) (the unbudgeted typed model's, penalty 0) is largest if it exceeds that
  type's threshold, calibrated per budget vector to the typed DP's expected requests of each
  type (quantile of the gains over the logged decision points); unknown states proceed;
- ``random``: intervene with probability p (type uniform among the affordable), p matched to
  the typed helper's requests per decision in the same cell.

Metrics per cell: success with a 95% Wilson interval, requests per type, total cost spent
(budget units) with a 95% normal interval, violations per type (must be 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from helpseek_core import metrics as M
from helpseek_core.typed import TypedModel, TypedSolution
from helpseek_core.typed_helper import TypedHelper
from training.envs import EnvAdapter, episode_rng, run_episode
from training.envs.runner import DecisionContext, Rung

__all__ = [
    "TypedDecide",
    "calibrate_thresholds",
    "helper_policy",
    "one_type_policy",
    "oracle_policy",
    "run_typed_cell",
    "threshold_policy",
    "type_gains",
    "typed_cell_metrics",
]

TypedDecide = Callable[[DecisionContext], int]


def run_typed_cell(
    adapter: EnvAdapter,
    decide: TypedDecide | float,
    budgets: Sequence[int],
    rungs: Sequence[Rung],
    episodes: int,
    seed_start: int,
    n_tasks: int,
    root_seed: int,
) -> dict[str, np.ndarray]:
    """Play one policy at one budget vector; per-episode success, requests per type, decisions."""
    m = len(rungs)
    succ = np.zeros(episodes, bool)
    by_type = np.zeros((episodes, m), np.int64)
    decisions = np.zeros(episodes, np.int64)
    for i in range(episodes):
        task = seed_start + i % n_tasks
        rng, dyn = episode_rng(root_seed, task, i // n_tasks)
        ep = run_episode(
            adapter, task, decide, rng=rng, rungs=rungs, budgets=list(budgets), dynamics_seed=dyn
        )
        succ[i], decisions[i] = ep.success, len(ep)
        by_type[i] = ep.by_type  # type: ignore[assignment]
    return {"success": succ, "by_type": by_type, "decisions": decisions}


def typed_cell_metrics(
    out: dict[str, np.ndarray], budgets: Sequence[int], costs: Sequence[int]
) -> dict[str, Any]:
    """Per-episode arrays of one cell -> success (Wilson CI), requests, cost spent (CI), violations."""
    rate = M.success_rate(out["success"])
    spent = out["by_type"] @ np.asarray(costs, np.int64)
    half = 1.96 * float(spent.std(ddof=1)) / np.sqrt(len(spent)) if len(spent) > 1 else 0.0
    over = out["by_type"] * np.asarray(costs)[None, :] > np.asarray(budgets)[None, :]
    return {
        "budgets": [int(b) for b in budgets],
        "episodes": int(rate.n),
        "success": rate.value,
        "ci": [rate.low, rate.high],
        "requests_per_episode": [float(v) for v in out["by_type"].mean(axis=0)],
        "cost_spent": float(spent.mean()),
        "cost_ci": [float(spent.mean()) - half, float(spent.mean()) + half],
        "decisions_per_episode": float(out["decisions"].mean()),
        "request_rate": float(out["by_type"].sum() / max(out["decisions"].sum(), 1)),
        "violations": [int(v) for v in over.sum(axis=0)],
    }


def helper_policy(helper: TypedHelper) -> TypedDecide:
    """Ask the typed helper with every type's remaining budget and the steps left."""

    def decide(ctx: DecisionContext) -> int:
        left = [float(c or 0) for c in ctx.remaining_per_type or ()]
        return helper.decide(ctx.features, left, max(ctx.steps_left, 0)).action

    return decide


def one_type_policy(helper: TypedHelper, i: int) -> TypedDecide:
    """Play a one-type helper (trained on type i alone) as type i of the ladder."""

    def decide(ctx: DecisionContext) -> int:
        left = [float((ctx.remaining_per_type or [0] * (i + 1))[i] or 0)]
        return (i + 1) if helper.decide(ctx.features, left, max(ctx.steps_left, 0)).action else 0

    return decide


def _index(keys: np.ndarray, key: int) -> int | None:
    j = int(np.searchsorted(keys, key))
    return j if j < keys.shape[0] and keys[j] == key else None


def oracle_policy(model: TypedModel, solution: TypedSolution) -> TypedDecide:
    """Play the typed DP's table at (t, s, remaining clipped to Cmax); unknown state or t >= H: proceed."""
    keys = model.parts[0].state_keys
    top = np.asarray(solution.cmax)

    def decide(ctx: DecisionContext) -> int:
        idx = _index(keys, ctx.state_key)
        if idx is None or ctx.t >= model.horizon:
            return 0
        c = np.minimum(np.asarray(ctx.remaining_per_type, np.int64), top)
        return int(solution.policy[(ctx.t, idx, *c)])

    return decide


def type_gains(model: TypedModel) -> np.ndarray:
    """(H, S, m) gain Q_i - Q_0 of each type under the unbudgeted optimum (no budget state)."""
    from helpseek_core.budgeted import cut_rewards, folded_rewards

    h, s_n = model.horizon, model.n_states
    folded = [(*folded_rewards(p), cut_rewards(p)) for p in model.parts]  # ((P0, P1), R, cut)
    p0, r0 = folded[0][0][0], folded[0][1][0]
    slots = max(model.k) + 1
    ring = np.zeros((slots, s_n))
    gains = np.zeros((h, s_n, model.m))
    for t in range(h - 1, -1, -1):
        q0 = r0 + p0 @ ring[(t + 1) % slots]
        best = q0.copy()
        for i, (part, ((_, p1), reward, cut)) in enumerate(zip(model.parts, folded, strict=True)):
            k = int(part.k)
            qi = cut[h - t - 1] if t + k >= h else reward[1] + p1 @ ring[(t + k) % slots]
            gains[t, :, i] = qi - q0
            best = np.maximum(best, qi)
        ring[t % slots] = best
    return gains


def threshold_policy(
    model: TypedModel, gains: np.ndarray, thresholds: Sequence[float]
) -> TypedDecide:
    """Request the affordable type with the largest gain if it exceeds its threshold."""
    keys = model.parts[0].state_keys
    tau = np.asarray(thresholds, np.float64)

    def decide(ctx: DecisionContext) -> int:
        idx = _index(keys, ctx.state_key)
        if idx is None or ctx.t >= model.horizon:
            return 0
        g = gains[ctx.t, idx] - tau
        for i, c in enumerate(ctx.remaining_per_type):  # type: ignore[arg-type]
            if c is not None and c < model.cost[i]:
                g[i] = -np.inf
        i = int(np.argmax(g))
        return i + 1 if g[i] > 0 else 0

    return decide


def calibrate_thresholds(
    gains_at_points: np.ndarray, visits: np.ndarray, target_rate: np.ndarray
) -> list[float]:
    """Per-type thresholds: the (1 - rate_i) visit-weighted quantile of type i's gains."""
    out = []
    w = visits.astype(np.float64) / visits.sum()
    for i in range(gains_at_points.shape[1]):
        g = gains_at_points[:, i]
        order = np.argsort(-g)
        cum = np.cumsum(w[order])
        j = int(np.searchsorted(cum, float(target_rate[i])))
        out.append(float(g[order[min(j, len(g) - 1)]]) if target_rate[i] > 0 else float("inf"))
    return out
