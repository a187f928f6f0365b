"""Labels for the helper: the optimal action at every logged decision point (docs/design.md §4).

For each logged (t, state_key) the label is the solver's decision there: from the budgeted
solver one bit per remaining budget c = 0 .. Cmax, from the Lagrangian solver one bit.
Rows the model cannot label — a step outside [0, H) or a state key the model does not know —
raise :class:`UnknownStateError` by default; with ``strict=False`` they get the label
"proceed" and :func:`labelable` tells which rows those are (use it as a mask to drop them).
"""

from __future__ import annotations

import numpy as np

from helpseek_core.errors import ShapeError, UnknownStateError
from helpseek_core.types import BudgetedSolution, LagrangianSolution, TabularModel

__all__ = ["label_budgeted", "label_lagrangian", "labelable"]


def _rows(
    model: TabularModel, t: np.ndarray, state_keys: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (t as int64, state indices, mask of labelable rows)."""
    t = np.asarray(t)
    keys = np.asarray(state_keys)
    if t.ndim != 1 or keys.ndim != 1 or t.shape != keys.shape:
        raise ShapeError(
            f"{where}: t and state_keys must be 1-D of equal length, got {t.shape} and {keys.shape}"
        )
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise ShapeError(f"{where}: t must hold integers, got dtype {t.dtype}")
    t = t.astype(np.int64)
    keys = keys.astype(np.int64)
    n_s = model.n_states
    idx = np.searchsorted(model.state_keys, keys)
    idx_c = np.minimum(idx, max(n_s - 1, 0))
    known = (idx < n_s) & (model.state_keys[idx_c] == keys) if n_s else np.zeros(keys.shape, bool)
    in_time = (t >= 0) & (t < model.horizon)
    return t, idx_c, known & in_time


def labelable(model: TabularModel, t: np.ndarray, state_keys: np.ndarray) -> np.ndarray:
    """Return (N,) bool: rows whose step lies in [0, H) and whose state key the model knows."""
    return _rows(model, t, state_keys, "labelable")[2]


def _check(
    model: TabularModel, t: np.ndarray, keys: np.ndarray, ok: np.ndarray, where: str
) -> None:
    if ok.all():
        return
    i = int(np.argmin(ok))
    if not 0 <= t[i] < model.horizon:
        raise UnknownStateError(
            f"{where}: row {i} has step t={int(t[i])}, outside [0, H={model.horizon})"
        )
    raise UnknownStateError(f"{where}: row {i} has state key {int(keys[i])}, unknown to the model")


def label_budgeted(
    solution: BudgetedSolution,
    model: TabularModel,
    t: np.ndarray,
    state_keys: np.ndarray,
    *,
    strict: bool = True,
) -> np.ndarray:
    """Label logged rows from the budgeted solver: (N, Cmax+1) bool, intervene with c left.

    ``t`` (N,) are the steps and ``state_keys`` (N,) the logged state keys. With ``strict``
    (default) an unlabelable row raises UnknownStateError naming the row; otherwise its labels
    are all False (see :func:`labelable`).
    """
    where = "label_budgeted"
    t, idx, ok = _rows(model, t, state_keys, where)
    if solution.policy.shape[:2] != (model.horizon, model.n_states):
        raise ShapeError(
            f"{where}: the solution's policy {solution.policy.shape} does not fit "
            f"the model (H={model.horizon}, S={model.n_states})"
        )
    if strict:
        _check(model, t, np.asarray(state_keys), ok, where)
    out = np.zeros((t.shape[0], solution.policy.shape[2]), dtype=bool)
    out[ok] = solution.policy[t[ok], idx[ok]]
    return out


def label_lagrangian(
    solution: LagrangianSolution,
    model: TabularModel,
    t: np.ndarray,
    state_keys: np.ndarray,
    *,
    strict: bool = True,
) -> np.ndarray:
    """Label logged rows from the Lagrangian solver: (N,) bool, does it intervene there.

    Same conventions as :func:`label_budgeted`.
    """
    where = "label_lagrangian"
    t, idx, ok = _rows(model, t, state_keys, where)
    if solution.policy.shape != (model.horizon, model.n_states):
        raise ShapeError(
            f"{where}: the solution's policy {solution.policy.shape} does not fit "
            f"the model (H={model.horizon}, S={model.n_states})"
        )
    if strict:
        _check(model, t, np.asarray(state_keys), ok, where)
    out = np.zeros(t.shape[0], dtype=bool)
    out[ok] = solution.policy[t[ok], idx[ok]]
    return out
