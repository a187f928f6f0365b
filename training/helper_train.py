"""Phase III: distil the DP's labels into one helper MLP for every budget c <= Cmax.

Rows. Every distinct logged decision point (t, s) — weighted by how often the log visits it —
times every remaining budget c with ``cost <= c <= cmax`` (below the cost the decision rule
refuses anyway, so those rows teach nothing). Input: :func:`helpseek_core.helper.encode_inputs`
(features z-scored by the training statistics, c / cmax, 1[c >= cost], steps_left / H), the
same function the service runs. Label: the exact budgeted solver's action at (t, s, c).

Class imbalance. "Intervene" labels are rare (a few per episode against tens of proceeds).
Positive rows are up-weighted by (n_neg / n_pos) ** ``class_balance`` (1 = fully balanced,
0 = none), with the visit weights kept, so the classifier does not learn "always proceed".

The Lagrangian variant (the paper's way) trains the same network on the penalty solver's
labels: for a target budget C its policy depends on (t, s) only, so its budget input is the
*starting* budget C of the episode (constant within an episode), for C in ``budgets``.

Training itself is ``training.mlp.fit_mlp`` (torch, CPU); the result is a
:class:`helpseek_core.helper.MLP` in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from helpseek_core.budgeted import folded_rewards, solve_budgeted
from helpseek_core.errors import ShapeError
from helpseek_core.helper import MLP, FeatureStats, Helper, encode_inputs
from helpseek_core.labels import label_budgeted, label_lagrangian, labelable
from helpseek_core.prm import MLPPRM, TabularPRM
from helpseek_core.types import BudgetedSolution, LagrangianSolution, StepLog, TabularModel
from training.envs import EnvAdapter

__all__ = [
    "DecisionPoints",
    "HelperConfig",
    "HelperRows",
    "budgeted_rows",
    "decision_points",
    "dp_intervention_rate",
    "estimate",
    "fit_helper",
    "lagrangian_rows",
    "load_helper_npz",
    "oracle_for",
    "row_accuracy",
    "save_helper_npz",
    "task_steps_left",
]


@dataclass(frozen=True)
class HelperConfig:
    """Helper MLP training (Phase III)."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the helper MLP."""
    epochs: int = 40
    """Passes over the (t, s, c) rows."""
    lr: float = 3e-3
    """Adam learning rate."""
    class_balance: float = 0.5
    """Up-weight positives by (n_neg / n_pos) ** this (0 = no rebalancing, 1 = balanced)."""
    visit_power: float = 0.5
    """Row weight = (visits of (t, s) in the log) ** this (0 = every point equal)."""
    threshold: float = 0.5
    """Decision threshold on P(intervene is optimal) written to the manifest."""
    seed: int = 0
    """Seed of initialisation and minibatch order."""


@dataclass(frozen=True, eq=False)
class HelperRows:
    """Training rows for the helper."""

    x: np.ndarray  # (M, F + 3) float32   encode_inputs(...)
    y: np.ndarray  # (M,) float32   1 = intervene is optimal
    w: np.ndarray  # (M,) float32   sample weight (visits x class balance), mean 1


@dataclass(frozen=True, eq=False)
class DecisionPoints:
    """Distinct logged (t, state) pairs known to the model."""

    t: np.ndarray  # (P,) int64
    state_key: np.ndarray  # (P,) int64
    features: np.ndarray  # (P, F) float32   features of the first logged visit
    visits: np.ndarray  # (P,) int64   logged rows at this (t, s)
    steps_left: np.ndarray  # (P,) int64   the episode's step limit minus t (first visit)


def decision_points(
    log: StepLog, model: TabularModel, steps_left: np.ndarray | None = None
) -> DecisionPoints:
    """Distinct (t, state_key) of the log with t < H whose state the model knows.

    ``steps_left`` (N,) per logged row is what the helper is asked with at run time: the
    episode's own step limit minus t (levels like BabyAI set a limit per task). Default
    ``model.horizon - t``.
    """
    known = labelable(model, log.t, log.state_key)
    if not known.any():
        raise ShapeError("decision_points: no logged state is known to the model")
    t = log.t[known].astype(np.int64)
    keys = log.state_key[known]
    feats = log.features[known]
    left = (model.horizon - log.t if steps_left is None else np.asarray(steps_left))[known]
    pair = np.stack([t, keys], axis=1)
    uniq, first, counts = np.unique(pair, axis=0, return_index=True, return_counts=True)
    return DecisionPoints(
        t=uniq[:, 0], state_key=uniq[:, 1], features=feats[first], visits=counts,
        steps_left=left[first].astype(np.int64),
    )


def _weights(y: np.ndarray, visits: np.ndarray, cfg: HelperConfig) -> np.ndarray:
    w = visits.astype(np.float64) ** cfg.visit_power
    n_pos = float(w[y > 0].sum())
    n_neg = float(w[y == 0].sum())
    if n_pos > 0 and n_neg > 0 and cfg.class_balance > 0:
        w = np.where(y > 0, w * (n_neg / n_pos) ** cfg.class_balance, w)
    return (w / w.mean()).astype(np.float32)


def budgeted_rows(
    points: DecisionPoints,
    model: TabularModel,
    solution: BudgetedSolution,
    stats: FeatureStats,
    horizon: int,
    cost: int,
    cfg: HelperConfig,
) -> HelperRows:
    """(t, s) x every c in [cost, cmax], labelled by the exact solver's policy table."""
    cmax = solution.cmax
    labels = label_budgeted(solution, model, points.t, points.state_key)
    xs, ys, vs = [], [], []
    for c in range(cost, cmax + 1):
        xs.append(
            encode_inputs(
                stats, points.features, np.full(points.t.shape, c), points.steps_left,
                cmax, horizon, cost,
            )
        )  # fmt: skip
        ys.append(labels[:, c])
        vs.append(points.visits)
    if not xs:
        raise ShapeError(f"budgeted_rows: cmax {cmax} < cost {cost}: nothing to learn")
    y = np.concatenate(ys).astype(np.float32)
    return HelperRows(np.concatenate(xs), y, _weights(y, np.concatenate(vs), cfg))


def lagrangian_rows(
    points: DecisionPoints,
    model: TabularModel,
    solutions: dict[int, LagrangianSolution],
    stats: FeatureStats,
    cmax: int,
    horizon: int,
    cost: int,
    cfg: HelperConfig,
) -> HelperRows:
    """(t, s) x each target budget C, labelled by the penalty solver found for that C."""
    xs, ys, vs = [], [], []
    for c, sol in sorted(solutions.items()):
        if c < cost:
            continue
        xs.append(
            encode_inputs(
                stats, points.features, np.full(points.t.shape, c), points.steps_left,
                cmax, horizon, cost,
            )
        )  # fmt: skip
        ys.append(label_lagrangian(sol, model, points.t, points.state_key))
        vs.append(points.visits)
    if not xs:
        raise ShapeError("lagrangian_rows: no target budget >= cost")
    y = np.concatenate(ys).astype(np.float32)
    return HelperRows(np.concatenate(xs), y, _weights(y, np.concatenate(vs), cfg))


def fit_helper(rows: HelperRows, cfg: HelperConfig, progress: bool = True) -> MLP:
    """Train the helper MLP on weighted rows (torch, CPU) and return it in numpy."""
    from training.mlp import fit_mlp  # torch is imported only when training

    return fit_mlp(
        rows.x, rows.y, sample_weight=rows.w, hidden=cfg.hidden, epochs=cfg.epochs, lr=cfg.lr,
        seed=cfg.seed, progress=progress,
    )  # fmt: skip


def row_accuracy(mlp: MLP, rows: HelperRows, threshold: float) -> dict[str, float]:
    """Agreement of the helper with its labels: weighted accuracy, recall and precision."""
    pred = mlp.probability(rows.x) >= threshold
    y = rows.y > 0
    w = rows.w.astype(np.float64)
    tp = float(w[pred & y].sum())
    return {
        "accuracy": float(w[pred == y].sum() / w.sum()),
        "recall": tp / float(w[y].sum()) if y.any() else float("nan"),
        "precision": tp / float(w[pred].sum()) if pred.any() else float("nan"),
        "positive_fraction": float(y.mean()),
        "rows": int(y.shape[0]),
    }


# ---- Phase II: the models the labels and the oracle come from -------------------------------


def estimate(
    log: StepLog, prm: MLPPRM | None, horizon: int, k: int, cost: int, n_min: int = 1,
    leaf: str = "prm",
    timeout_failure: bool = False,
) -> TabularModel:
    """Estimate the tabular model from the log with PRM-valued leaves.

    ``leaf``: 'prm' (the MLP PRM on the state's features; the shrunk tabular PRM for states
    logged only as next states) or 'monte_carlo' (the log's success rates, core's default).
    ``timeout_failure``: a time-out row ends in the failure terminal (per-task step limits
    that one global horizon cannot express) instead of being an ordinary transition.
    """
    if timeout_failure:
        log = replace(log, truncated=np.zeros(len(log), bool))
    from helpseek_core.model import estimate_model, model_state_keys

    leaves = None
    if leaf == "prm" and prm is not None:
        keys = model_state_keys(log)
        leaves = TabularPRM.fit(log).score_keys(keys)
        uk, first = np.unique(log.state_key, return_index=True)
        pos = np.searchsorted(keys, uk)
        leaves[pos] = prm.score(log.features[first])
    elif leaf not in ("prm", "monte_carlo"):
        raise ValueError(f"ModelConfig.leaf must be 'prm' or 'monte_carlo', got {leaf!r}")
    return estimate_model(log, horizon=horizon, k=k, cost=cost, n_min=n_min, leaf_values=leaves)


def dp_intervention_rate(model: TabularModel, solution: BudgetedSolution) -> np.ndarray:
    """(C,) expected interventions per decision point for each starting budget c0 <= cmax.

    A forward pass of the state-budget occupancy under the DP policy from the start
    distribution: mass at (t, s, c) proceeds to t + 1 or intervenes to t + k with c - cost.
    """
    (p0, p1), _ = folded_rewards(model)
    p0t, p1t = p0.T.tocsr(), p1.T.tocsr()
    h, s_n, c_n = solution.policy.shape
    k, cost = model.k, model.cost
    ring = np.zeros((k + 1, s_n, c_n, c_n))  # [.., s, c0, c]
    for c0 in range(c_n):
        ring[0, :, c0, c0] = model.start
    decisions = np.zeros(c_n)
    interventions = np.zeros(c_n)
    for t in range(h):
        occ = ring[t % (k + 1)].copy()
        ring[t % (k + 1)] = 0.0
        if not occ.any():
            continue
        decisions += occ.sum(axis=(0, 2))
        pol = solution.policy[t][:, None, :]  # (S, 1, C)
        go = occ * pol
        stay = occ - go
        interventions += go.sum(axis=(0, 2))
        if t + 1 < h:
            ring[(t + 1) % (k + 1)] += (p0t @ stay.reshape(s_n, -1)).reshape(s_n, c_n, c_n)
        if t + k < h and go.any():
            moved = np.zeros_like(go)
            moved[:, :, : c_n - cost] = go[:, :, cost:]
            ring[(t + k) % (k + 1)] += (p1t @ moved.reshape(s_n, -1)).reshape(s_n, c_n, c_n)
    return np.where(decisions > 0, interventions / np.maximum(decisions, 1e-12), 0.0)


def oracle_for(
    adapter: EnvAdapter,
    k: int,
    cost: int,
    cmax: int,
    estimated: tuple[TabularModel, BudgetedSolution] | None,
) -> tuple[TabularModel | None, BudgetedSolution | None, str]:
    """Build the DP oracle: the exact model where the adapter has one, else the estimated one."""
    exact = getattr(adapter, "exact_arrays", None)
    if callable(exact):
        from helpseek_core.exact import model_from_policies

        arr = exact()
        model = model_from_policies(
            arr.trans, arr.succ, arr.fail, arr.weak_policy, arr.expert_policy, arr.start,
            horizon=arr.horizon, k=k, cost=cost, state_keys=arr.state_keys,
        )  # fmt: skip
        return model, solve_budgeted(model, cmax), "exact"
    if estimated is not None:
        model, _ = estimated
        return model, solve_budgeted(model, cmax), "estimated"
    return None, None, "none"


def task_steps_left(log: StepLog, adapter: EnvAdapter) -> tuple[int, np.ndarray]:
    """(model horizon, (N,) steps left per row): each task's own step limit minus t.

    The step limit can differ per task (BabyAI: twice the bot's length on that seed), so it
    is read from the adapter after resetting it to each logged task; the model horizon is the
    largest limit (or the longest logged episode, if longer).
    """
    tasks = np.unique(log.task_id)
    limits = np.empty(tasks.shape[0], np.int64)
    for i, task in enumerate(tasks):
        adapter.reset(int(task))
        limits[i] = adapter.horizon
    per_row = limits[np.searchsorted(tasks, log.task_id)]
    longest = int((log.t.astype(np.int64) + log.duration).max())
    return max(int(limits.max()), longest), per_row - log.t.astype(np.int64)


def save_helper_npz(path: Path, mlp: MLP, stats: FeatureStats, budgets: list[int]) -> None:
    """Write a comparator helper (e.g. the Lagrangian one) as one ``.npz`` (no pickle)."""
    np.savez(path, **mlp.to_arrays(), **stats.to_arrays(), budgets=np.asarray(budgets))


def load_helper_npz(path: Path, like: Helper) -> Helper:
    """Read :func:`save_helper_npz` output as a Helper with ``like``'s constants."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Helper(
        MLP.from_arrays(arrays, str(path)), FeatureStats.from_arrays(arrays, str(path)),
        like.cmax, like.horizon, like.cost, like.threshold,
    )  # fmt: skip
