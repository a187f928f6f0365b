"""Estimate the tabular model T(s' | s, a) from a step log (docs/design.md §4).

Counts N(s, a, s') over logged rows go into sparse matrices (no Python loop over rows or
states). Destinations:

- a row with ``done & ~truncated`` ends in the success terminal if the episode succeeded,
  else in the failure terminal (its ``next_state_key`` is ignored);
- every other row (including a time-out, ``truncated``) is an ordinary transition to
  ``next_state_key``: the horizon, not the model, handles time-outs;
- except an intervention that the step limit cut short (``truncated`` and ``duration < k``):
  it is not a k-step macro action, so it is not counted (its state stays in the model).

``succ1_steps[j - 1, s]`` (success within the first j expert steps, for interventions the
horizon cuts) counts the intervene rows from s that ended in success after ``duration <= j``
steps, over the same visits as ``succ[1]``.

States are every ``state_key`` plus every ``next_state_key`` of a non-terminal row, sorted.
A pair (s, a) seen fewer than ``n_min`` times (including states seen only as next states,
whose pairs have zero counts) is a leaf: it is not backed up and takes ``leaf_values[s, a]``
(e.g. the PRM, aligned to :func:`model_state_keys`) or, when none are given, the Monte-Carlo
success rate of that pair in the log, else of that state (as a state, else as a next state),
else the log's mean. The start distribution is the empirical distribution of rows with t == 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from helpseek_core.errors import BudgetError, ProbabilityError, ShapeError
from helpseek_core.types import StepLog, TabularModel

__all__ = ["align_keys", "estimate_model", "model_state_keys"]


def _terminal_rows(log: StepLog) -> np.ndarray:
    return log.done & ~log.truncated


def model_state_keys(log: StepLog) -> np.ndarray:
    """(S,) int64: the sorted state keys :func:`estimate_model` will use for this log.

    Use it to score the PRM on exactly the model's states before building ``leaf_values``.
    """
    ongoing = ~_terminal_rows(log)
    return np.unique(np.concatenate([log.state_key, log.next_state_key[ongoing]]))


def align_keys(state_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in the sorted ``state_keys``, or -1 where the key is absent."""
    state_keys = np.asarray(state_keys, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.int64)
    if state_keys.size == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    idx = np.minimum(np.searchsorted(state_keys, keys), state_keys.size - 1)
    return np.where(state_keys[idx] == keys, idx, -1).astype(np.int64)


def _rate(success: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean success per group and the group sizes."""
    n = np.bincount(group, minlength=n_groups)
    wins = np.bincount(group, weights=success.astype(np.float64), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / n, n


def estimate_model(
    log: StepLog,
    horizon: int,
    k: int,
    cost: int,
    n_min: int = 1,
    leaf_values: np.ndarray | None = None,
    state_keys: np.ndarray | None = None,
) -> TabularModel:
    """Count transitions in ``log`` into a TabularModel with PRM / Monte-Carlo leaves.

    ``horizon``, ``k`` and ``cost`` describe the problem the model is solved for (an
    intervene row's logged ``cost`` must equal ``cost``). ``n_min`` >= 1: pairs seen fewer
    times become leaves. ``state_keys`` (optional) widens the model's states to this sorted
    superset of :func:`model_state_keys` (extra states are leaves), so that several models
    share one state index. ``leaf_values`` (S, 2), aligned to the model's states, values
    the leaves (finite where used); when None the Monte-Carlo rates are used (module doc).
    Raises ShapeError for an empty log or no row with t == 0, BudgetError for bad
    ``n_min`` / ``cost``, ProbabilityError for NaN leaf values.
    """
    where = "estimate_model"
    if len(log) == 0:
        raise ShapeError(f"{where}: the step log is empty")
    if int(n_min) != n_min or n_min < 1:
        raise BudgetError(f"{where}: n_min must be an integer >= 1, got {n_min!r}")
    if int(cost) != cost or cost < 1:
        raise BudgetError(f"{where}: cost must be a positive integer, got {cost!r}")
    bad_cost = (log.action == 1) & (log.cost != cost)
    if bad_cost.any():
        row = int(np.argmax(bad_cost))
        raise BudgetError(
            f"{where}: row {row} is an intervention costing {int(log.cost[row])}, expected {cost}"
        )
    keys = model_state_keys(log)
    if state_keys is not None:  # a wider key set (several models over one set of states)
        wide = np.unique(np.asarray(state_keys, dtype=np.int64))
        missing = np.setdiff1d(keys, wide)
        if missing.size:
            raise ShapeError(f"{where}: state_keys lacks key {int(missing[0])} of the log")
        keys = wide
    n_s = keys.shape[0]
    cut = (log.action == 1) & log.truncated & ~_terminal_rows(log) & (log.duration < int(k))
    if cut.any():
        log = log.take(~cut)
    src = np.searchsorted(keys, log.state_key)
    action = log.action.astype(np.int64)
    terminal = _terminal_rows(log)
    dst = np.where(terminal, np.where(log.success, n_s, n_s + 1), 0)
    ongoing = ~terminal
    dst[ongoing] = np.searchsorted(keys, log.next_state_key[ongoing])
    pair = action * n_s + src  # row of the stacked (2S, S+2) count matrix
    counts_m = sp.coo_matrix(
        (np.ones(len(log)), (pair, dst)), shape=(2 * n_s, n_s + 2)
    ).tocsr()  # duplicates summed
    n_pair = np.bincount(pair, minlength=2 * n_s)  # (2S,)
    inv = np.where(n_pair > 0, 1.0 / np.maximum(n_pair, 1), 0.0)
    probs = sp.csr_matrix(sp.diags(inv) @ counts_m)
    trans = (probs[:n_s, :n_s].tocsr(), probs[n_s:, :n_s].tocsr())
    term = probs[:, n_s:].toarray()  # (2S, 2)
    succ = term[:, 0].reshape(2, n_s)
    fail = term[:, 1].reshape(2, n_s)
    counts = n_pair.reshape(2, n_s).T.astype(np.int64)  # (S, 2)
    succ1_steps = _success_within(log, src, terminal, n_s, int(k), inv[n_s:])
    succ1_steps[-1] = succ[1]
    leaf_mask = counts < int(n_min)

    if leaf_values is None:
        value = _monte_carlo_leaves(log, keys, pair, src, n_s)
    else:
        value = np.asarray(leaf_values, dtype=np.float64)
        if value.shape != (n_s, 2):
            raise ShapeError(
                f"{where}: leaf_values has shape {value.shape}, expected (S={n_s}, 2) aligned "
                "to model_state_keys(log)"
            )
        bad = leaf_mask & ~np.isfinite(value)
        if bad.any():
            s, a = (int(i) for i in np.argwhere(bad)[0])
            raise ProbabilityError(
                f"{where}: leaf_values is not finite for state key {int(keys[s])}, action {a}"
            )
    first = log.t == 0
    if not first.any():
        raise ShapeError(f"{where}: no row with t == 0, cannot estimate the start distribution")
    start = np.bincount(src[first], minlength=n_s).astype(np.float64)
    return TabularModel(
        state_keys=keys,
        trans=trans,
        succ=succ,
        fail=fail,
        start=start / start.sum(),
        horizon=int(horizon),
        k=int(k),
        cost=int(cost),
        leaf_mask=leaf_mask,
        leaf_value=np.where(leaf_mask, value, 0.0),
        counts=counts,
        succ1_steps=succ1_steps,
    )


def _success_within(
    log: StepLog, src: np.ndarray, terminal: np.ndarray, n_s: int, k: int, inv: np.ndarray
) -> np.ndarray:
    """(k, S): share of the intervene visits of s that reached success within j steps."""
    won = (log.action == 1) & terminal & log.success
    dur = np.clip(log.duration[won].astype(np.int64), 1, k)
    hits = np.zeros((k, n_s))
    np.add.at(hits, (dur - 1, src[won]), 1.0)
    return np.cumsum(hits, axis=0) * inv[None, :]


def _monte_carlo_leaves(
    log: StepLog, keys: np.ndarray, pair: np.ndarray, src: np.ndarray, n_s: int
) -> np.ndarray:
    """(S, 2) success rate per pair, falling back to the state's rate, then the log's mean."""
    pair_rate, _ = _rate(log.success, pair, 2 * n_s)
    value = pair_rate.reshape(2, n_s).T
    state_rate, n_state = _rate(log.success, src, n_s)
    ongoing = ~_terminal_rows(log)
    nxt = np.searchsorted(keys, log.next_state_key[ongoing])
    next_rate, _ = _rate(log.success[ongoing], nxt, n_s)
    state_rate = np.where(n_state > 0, state_rate, next_rate)
    state_rate = np.where(np.isfinite(state_rate), state_rate, float(log.success.mean()))
    return np.where(np.isfinite(value), value, state_rate[:, None])
