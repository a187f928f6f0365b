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
:class:`helpseek_core.mlp.MLP` in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.errors import ShapeError
from helpseek_core.helper import FeatureStats, Helper, encode_inputs
from helpseek_core.labels import label_budgeted, label_lagrangian, labelable
from helpseek_core.mlp import MLP
from helpseek_core.types import BudgetedSolution, LagrangianSolution, StepLog, TabularModel

__all__ = [
    "DecisionPoints",
    "HelperConfig",
    "HelperRows",
    "budgeted_rows",
    "decision_points",
    "fit_helper",
    "label_table",
    "lagrangian_rows",
    "load_helper_npz",
    "row_accuracy",
    "save_helper_npz",
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
    row: np.ndarray  # (P,) int64   the first visit's row in the log (its text, ...)


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
        t=uniq[:, 0],
        state_key=uniq[:, 1],
        features=feats[first],
        visits=counts,
        steps_left=left[first].astype(np.int64),
        row=np.flatnonzero(known)[first],
    )


def label_table(
    points: DecisionPoints, model: TabularModel, solution: BudgetedSolution, cost: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the label rows: budgets (B,) = cost..cmax and labels (P, B) = the DP's action.

    Every representation's helper trains on these (t, s, c) rows: features through
    :func:`budgeted_rows`, text through ``training.text_pipeline``.
    """
    budgets = np.arange(cost, solution.cmax + 1)
    if budgets.size == 0:
        raise ShapeError(f"label_table: cmax {solution.cmax} < cost {cost}: nothing to learn")
    labels = label_budgeted(solution, model, points.t, points.state_key)
    return budgets, labels[:, budgets]


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
    """(t, s) x every c in [cost, cmax], labelled by the exact solver (:func:`label_table`)."""
    cmax = solution.cmax
    budgets, labels = label_table(points, model, solution, cost)
    xs, ys, vs = [], [], []
    for j, c in enumerate(budgets):
        xs.append(
            encode_inputs(
                stats,
                points.features,
                np.full(points.t.shape, c),
                points.steps_left,
                cmax,
                horizon,
                cost,
            )
        )
        ys.append(labels[:, j])
        vs.append(points.visits)
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
                stats,
                points.features,
                np.full(points.t.shape, c),
                points.steps_left,
                cmax,
                horizon,
                cost,
            )
        )
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
        rows.x,
        rows.y,
        sample_weight=rows.w,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=cfg.seed,
        progress=progress,
    )


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


def save_helper_npz(path: Path, mlp: MLP, stats: FeatureStats, budgets: list[int]) -> None:
    """Write a comparator helper (e.g. the Lagrangian one) as one ``.npz`` (no pickle)."""
    arrays: dict[str, Any] = {
        **mlp.to_arrays(),
        **stats.to_arrays(),
        "budgets": np.asarray(budgets),
    }
    np.savez(path, **arrays)


def load_helper_npz(path: Path, like: Helper) -> Helper:
    """Read :func:`save_helper_npz` output as a Helper with ``like``'s constants."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Helper(
        MLP.from_arrays(arrays, str(path)),
        FeatureStats.from_arrays(arrays, str(path)),
        like.cmax,
        like.horizon,
        like.cost,
        like.threshold,
    )
