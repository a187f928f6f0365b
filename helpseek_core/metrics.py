"""Evaluation metrics: pure functions over arrays (success, usage, gap recovered, calibration).

Gap metrics follow Min et al. 2025. With S_never / S_always the success rates of the never-
and always-intervene policies:

- **PGR** (performance gap recovered) = (S - S_never) / (S_always - S_never).
- A policy family (one point per budget) traces a *PGR curve*: PGR against interventions per
  episode u. The curve is the piecewise-linear interpolation of the points sorted by u, with
  the anchor (u=0, PGR=0) prepended when no point has u = 0 (spending nothing is the never
  policy), and held flat after its last point (a policy can always leave budget unused).
- **APGR** = (1 / U_always) * integral_0^U_always PGR(u) du: the area under that curve up to
  the always policy's usage, normalised so that recovering the whole gap for free gives 1.
  ``mean_pgr`` is the simpler average of PGR over the evaluated budgets.
- **CPT(p)** = the smallest u at which the PGR curve reaches p (cost to reach fraction p of
  the gap), linearly interpolated between points; NaN if it never does.

Undefined ratios (zero gap, zero oracle success, AUROC with one class) return NaN rather than
raising: evaluation tables print them. Bad input (length mismatch, empty arrays, NaN,
probabilities outside [0, 1], labels not 0/1) raises a named :mod:`helpseek_core.errors` error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from helpseek_core.errors import BudgetError, InputError, ProbabilityError, ShapeError

__all__ = [
    "CPT_LEVELS",
    "Rate",
    "apgr",
    "auroc",
    "brier_score",
    "budget_violations",
    "cpt",
    "ece",
    "intervention_rate",
    "interventions_per_episode",
    "mean_pgr",
    "oracle_ratio",
    "pgr",
    "pgr_curve",
    "success_rate",
    "wilson_interval",
]

CPT_LEVELS = (0.5, 0.8, 0.95)


def _vector(name: str, x: ArrayLike, where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ShapeError(f"{where}: {name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ShapeError(f"{where}: {name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ProbabilityError(
            f"{where}: {name} has NaN or inf at index {int(np.argmin(np.isfinite(arr)))}"
        )
    return arr


def _same_len(where: str, **arrays: np.ndarray) -> None:
    lens = {k: v.shape[0] for k, v in arrays.items()}
    if len(set(lens.values())) > 1:
        raise ShapeError(f"{where}: length mismatch {lens}")


def _binary(name: str, x: ArrayLike, where: str) -> np.ndarray:
    arr = _vector(name, x, where)
    if np.any((arr != 0) & (arr != 1)):
        raise InputError(f"{where}: {name} must be 0/1 (or bool)")
    return arr


def _probabilities(name: str, x: ArrayLike, where: str) -> np.ndarray:
    arr = _vector(name, x, where)
    if np.any((arr < 0) | (arr > 1)):
        raise ProbabilityError(f"{where}: {name} has values outside [0, 1]")
    return arr


@dataclass(frozen=True)
class Rate:
    """A proportion with its Wilson interval."""

    value: float  # k / n
    low: float
    high: float
    n: int


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n trials."""
    if int(n) != n or n < 1 or int(successes) != successes or not 0 <= successes <= n:
        raise InputError(
            f"wilson_interval: need integers 0 <= successes <= n, n >= 1; got {successes}/{n}"
        )
    if not 0 < confidence < 1:
        raise ProbabilityError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the interval always contains p; clamp away round-off at k = 0 and k = n
    return min(p, max(0.0, float(centre - half))), max(p, min(1.0, float(centre + half)))


def success_rate(successes: ArrayLike, confidence: float = 0.95) -> Rate:
    """(E,) episode outcomes (0/1) -> success rate with a Wilson interval."""
    y = _binary("successes", successes, "success_rate")
    k, n = int(y.sum()), int(y.size)
    low, high = wilson_interval(k, n, confidence)
    return Rate(k / n, low, high, n)


def interventions_per_episode(interventions: ArrayLike) -> float:
    """(E,) interventions used per episode -> their mean."""
    x = _vector("interventions", interventions, "interventions_per_episode")
    if np.any(x < 0):
        raise BudgetError("interventions_per_episode: negative intervention count")
    return float(x.mean())


def intervention_rate(interventions: ArrayLike, decisions: ArrayLike) -> float:
    """Per-episode interventions and decision points (E,), (E,) -> total interventions / decisions."""
    i = _vector("interventions", interventions, "intervention_rate")
    d = _vector("decisions", decisions, "intervention_rate")
    _same_len("intervention_rate", interventions=i, decisions=d)
    if np.any(i < 0) or np.any(i > d):
        raise BudgetError("intervention_rate: need 0 <= interventions <= decisions per episode")
    total = d.sum()
    return float(i.sum() / total) if total > 0 else float("nan")


def budget_violations(usage: ArrayLike, budget: ArrayLike) -> int:
    """Count the episodes whose usage (E,) exceeds the budget (scalar or (E,))."""
    u = _vector("usage", usage, "budget_violations")
    b = (
        np.broadcast_to(np.asarray(budget, np.float64), u.shape)
        if np.ndim(budget) == 0
        else (_vector("budget", budget, "budget_violations"))
    )
    _same_len("budget_violations", usage=u, budget=b)
    return int(np.count_nonzero(u > b))


def pgr(s_policy: float | np.ndarray, s_never: float, s_always: float) -> float | np.ndarray:
    """Compute the gap recovered (S - S_never) / (S_always - S_never); NaN when the gap is 0."""
    s = np.asarray(s_policy, np.float64)
    if not (np.all(np.isfinite(s)) and np.isfinite(s_never) and np.isfinite(s_always)):
        raise ProbabilityError("pgr: success rates must be finite")
    gap = float(s_always) - float(s_never)
    out = np.full(s.shape, np.nan) if abs(gap) < 1e-12 else (s - s_never) / gap
    return float(out) if out.ndim == 0 else out


def oracle_ratio(s_policy: float, s_oracle: float) -> float:
    """S_policy / S_oracle; NaN when the oracle never succeeds."""
    if not (np.isfinite(s_policy) and np.isfinite(s_oracle)):
        raise ProbabilityError("oracle_ratio: success rates must be finite")
    return float(s_policy) / float(s_oracle) if s_oracle > 0 else float("nan")


def pgr_curve(
    usage: ArrayLike, success: ArrayLike, s_never: float, s_always: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points (u, PGR) of a policy family sorted by u, with (0, 0) prepended if no u = 0."""
    u = _vector("usage", usage, "pgr_curve")
    s = _vector("success", success, "pgr_curve")
    _same_len("pgr_curve", usage=u, success=s)
    if np.any(u < 0):
        raise BudgetError("pgr_curve: negative usage")
    order = np.argsort(u, kind="stable")
    u, g = u[order], np.asarray(pgr(s[order], s_never, s_always))
    if u[0] > 0:
        u, g = np.concatenate([[0.0], u]), np.concatenate([[0.0], g])
    return u, g


def apgr(
    usage: ArrayLike, success: ArrayLike, s_never: float, s_always: float, usage_always: float
) -> float:
    """Area under the PGR curve over [0, usage_always], divided by usage_always (module doc)."""
    if not np.isfinite(usage_always) or usage_always <= 0:
        raise BudgetError(f"apgr: usage_always must be > 0, got {usage_always}")
    u, g = pgr_curve(usage, success, s_never, s_always)
    if np.any(np.isnan(g)):
        return float("nan")
    grid = np.concatenate([u[u < usage_always], [usage_always]])
    vals = np.interp(grid, u, g)  # flat after the last point
    return float(np.sum((grid[1:] - grid[:-1]) * (vals[1:] + vals[:-1]) / 2) / usage_always)


def mean_pgr(success: ArrayLike, s_never: float, s_always: float) -> float:
    """Average PGR over the evaluated budgets (one success rate per budget)."""
    s = _vector("success", success, "mean_pgr")
    return float(np.mean(pgr(s, s_never, s_always)))


def cpt(usage: ArrayLike, success: ArrayLike, s_never: float, s_always: float, p: float) -> float:
    """Interventions per episode needed to recover fraction ``p`` of the gap; NaN if never."""
    if not 0 <= p <= 1:
        raise ProbabilityError(f"cpt: p must be in [0, 1], got {p}")
    u, g = pgr_curve(usage, success, s_never, s_always)
    if np.any(np.isnan(g)):
        return float("nan")
    hit = np.flatnonzero(g >= p)
    if hit.size == 0:
        return float("nan")
    j = int(hit[0])
    if j == 0:
        return float(u[0])
    u0, u1, g0, g1 = u[j - 1], u[j], g[j - 1], g[j]
    return float(u0 + (p - g0) / (g1 - g0) * (u1 - u0))


def brier_score(probs: ArrayLike, outcomes: ArrayLike) -> float:
    """Mean squared error of probabilities (N,) against 0/1 outcomes (N,)."""
    p = _probabilities("probs", probs, "brier_score")
    y = _binary("outcomes", outcomes, "brier_score")
    _same_len("brier_score", probs=p, outcomes=y)
    return float(np.mean((p - y) ** 2))


def ece(probs: ArrayLike, outcomes: ArrayLike, n_bins: int = 10) -> float:
    """Compute the expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    ECE = sum_b (n_b / N) * |mean(p in b) - mean(y in b)|; bin b holds p in [b/n, (b+1)/n),
    the last bin also holds p = 1; empty bins contribute nothing.
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"ece: n_bins must be a positive integer, got {n_bins}")
    p = _probabilities("probs", probs, "ece")
    y = _binary("outcomes", outcomes, "ece")
    _same_len("ece", probs=p, outcomes=y)
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    gap = np.abs(
        np.bincount(b, weights=p, minlength=n_bins) - np.bincount(b, weights=y, minlength=n_bins)
    )
    return float(gap.sum() / p.size)  # (n_b / N) * |mean p - mean y| = |sum p - sum y| / N


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve from ranks (ties count 1/2); NaN when only one class is present."""
    s = _vector("scores", scores, "auroc")
    y = _binary("labels", labels, "auroc")
    _same_len("auroc", scores=s, labels=y)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
