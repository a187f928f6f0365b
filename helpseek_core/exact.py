"""Exact tabular models from known dynamics, and exact evaluation of a policy.

:func:`model_from_policies` turns an MDP with known dynamics (e.g. gymnasium toy_text's
``env.unwrapped.P``, converted to plain arrays by the caller) plus a weak base policy and an
expert policy into the :class:`TabularModel` both solvers read: action 0 (proceed) is one
step of the weak policy, action 1 (intervene) is the expert acting for k steps (absorbed by
the terminals on the way). :func:`evaluate_policy` computes the exact success probability and
expected interventions of any intervention policy by a forward pass over the state
distribution — independent of the backward solvers, so tests can check one with the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from helpseek_core.budgeted import check_budget, cut_rewards, folded_rewards
from helpseek_core.errors import BudgetError, ProbabilityError, ShapeError
from helpseek_core.types import TabularModel

__all__ = ["evaluate_policy", "model_from_policies"]

_TOL = 1e-6


def _as_matrices(p: np.ndarray | sp.spmatrix | Sequence[object], where: str) -> list[sp.csr_matrix]:
    """Convert an (A, S, S) array or a sequence of A (S, S) matrices to CSR float64."""
    if isinstance(p, np.ndarray):
        if p.ndim != 3 or p.shape[1] != p.shape[2]:
            raise ShapeError(f"{where}: P must have shape (A, S, S), got {p.shape}")
        mats = [sp.csr_matrix(p[a], dtype=np.float64) for a in range(p.shape[0])]
    else:
        mats = [sp.csr_matrix(m, dtype=np.float64) for m in p]
    if not mats:
        raise ShapeError(f"{where}: P holds no actions")
    for a, m in enumerate(mats):
        if m.shape != mats[0].shape or m.shape[0] != m.shape[1]:
            raise ShapeError(
                f"{where}: P[{a}] has shape {m.shape}, expected square {mats[0].shape}"
            )
        if m.nnz and (not np.all(np.isfinite(m.data)) or m.data.min() < 0):
            raise ProbabilityError(f"{where}: P[{a}] has NaN or negative entries")
    return mats


def _as_array(name: str, x: object, shape: tuple[int, ...], where: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != shape:
        raise ShapeError(f"{where}: {name} has shape {arr.shape}, expected {shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ProbabilityError(
            f"{where}: {name} is NaN or negative at {tuple(int(i) for i in np.argwhere(bad)[0])}"
        )
    return arr


def _check_rows(name: str, total: np.ndarray, where: str, what: str) -> None:
    bad = np.abs(total - 1.0) > _TOL
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ProbabilityError(f"{where}: {name} {what} {idx} sums to {total[idx]:.6g}, not 1")


def _mix(
    mats: list[sp.csr_matrix], succ: np.ndarray, fail: np.ndarray, pi: np.ndarray
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """One step of the stochastic policy pi (S, A): sum_a diag(pi[:, a]) P[a]."""
    m = sp.csr_matrix(mats[0].shape)
    for a, pa in enumerate(mats):
        m = m + sp.diags(pi[:, a]) @ pa
    return sp.csr_matrix(m), np.einsum("as,sa->s", succ, pi), np.einsum("as,sa->s", fail, pi)


def model_from_policies(
    P: np.ndarray | Sequence[object],
    succ: np.ndarray,
    fail: np.ndarray,
    weak_policy: np.ndarray,
    expert_policy: np.ndarray,
    start: np.ndarray,
    horizon: int,
    k: int = 1,
    cost: int = 1,
    state_keys: np.ndarray | None = None,
) -> TabularModel:
    """Build the exact TabularModel of "weak agent, or expert for k steps" on a known MDP.

    Arguments (S non-terminal states, A environment actions; terminals are not states here):

    - ``P``: (A, S, S) dense array or a sequence of A sparse (S, S) matrices;
      ``P[a][s, s']`` = probability of reaching non-terminal s' from s under action a.
    - ``succ``, ``fail``: (A, S) probability of entering the success / failure terminal
      (each row of P[a] plus succ[a, s] plus fail[a, s] must sum to 1).
    - ``weak_policy``, ``expert_policy``: (S, A) action probabilities (rows sum to 1).
    - ``start``: (S,) start distribution; ``horizon``: H; ``k``: steps the expert acts per
      intervention; ``cost``: budget units per intervention; ``state_keys``: (S,) sorted unique
      int64 keys (default 0 .. S-1).

    Proceed = one step of the weak policy; intervene = k steps of the expert, success /
    failure absorbing on the way. Raises ShapeError / ProbabilityError naming the bad input.
    """
    where = "model_from_policies"
    mats = _as_matrices(P, where)
    n_a, n_s = len(mats), mats[0].shape[0]
    succ = _as_array("succ", succ, (n_a, n_s), where)
    fail = _as_array("fail", fail, (n_a, n_s), where)
    for a, m in enumerate(mats):
        total = np.asarray(m.sum(axis=1)).ravel() + succ[a] + fail[a]
        _check_rows(f"P[{a}] + succ + fail", total, where, "at state")
    weak = _as_array("weak_policy", weak_policy, (n_s, n_a), where)
    expert = _as_array("expert_policy", expert_policy, (n_s, n_a), where)
    _check_rows("weak_policy", weak.sum(axis=1), where, "row")
    _check_rows("expert_policy", expert.sum(axis=1), where, "row")
    if int(k) != k or k < 1:
        raise BudgetError(f"{where}: k must be a positive integer, got {k!r}")
    p0, s0, f0 = _mix(mats, succ, fail, weak)
    e, es, ef = _mix(mats, succ, fail, expert)
    p1, s1, f1 = e, es.copy(), ef.copy()
    steps = [s1]  # success within j = 1 .. k expert steps (for interventions the horizon cuts)
    for _ in range(int(k) - 1):  # T^k with absorbing terminals: mass leaves p1 into s1 / f1
        s1 = s1 + p1 @ es
        f1 = f1 + p1 @ ef
        p1 = sp.csr_matrix(p1 @ e)
        steps.append(s1)
    keys = np.arange(n_s, dtype=np.int64) if state_keys is None else np.asarray(state_keys)
    return TabularModel(
        state_keys=keys,
        trans=(p0, p1),
        succ=np.stack([s0, s1]),
        fail=np.stack([f0, f1]),
        start=_as_array("start", start, (n_s,), where),
        horizon=int(horizon),
        k=int(k),
        cost=int(cost),
        succ1_steps=np.stack(steps),
    )


def evaluate_policy(
    model: TabularModel, policy: np.ndarray, budget: int | None = None
) -> tuple[float, float]:
    """Exact (success probability, expected interventions) of a policy from the start distribution.

    ``policy`` is (H, S, C) bool indexed by remaining budget (a budgeted policy, run with
    ``budget`` units at the start; an intervention the remaining budget cannot pay for is
    refused and the agent proceeds) or (H, S) bool (no budget state; ``budget`` ignored).
    A forward pass over the distribution of (s, c) per step, with the model's conventions:
    an intervention takes k steps, one started at t with t + k > H is cut by the horizon
    (success within the H - t steps left, ``succ1_steps``); a leaf pair ends with its leaf value.
    """
    where = "evaluate_policy"
    pol = np.asarray(policy, dtype=bool)
    h, n_s, cost, k = model.horizon, model.n_states, model.cost, model.k
    if pol.ndim == 2:
        pol = pol[:, :, None]
        c0, c_n, spend = 0, 1, 0
    elif pol.ndim == 3:
        c0 = check_budget(budget, where)
        c_n = pol.shape[2]
        if c0 >= c_n:
            raise BudgetError(f"{where}: budget {c0} exceeds the policy's Cmax {c_n - 1}")
        spend = cost
    else:
        raise ShapeError(f"{where}: policy must be (H, S) or (H, S, C), got {pol.shape}")
    if pol.shape[:2] != (h, n_s):
        raise ShapeError(f"{where}: policy has shape {pol.shape}, expected (H={h}, S={n_s}, ...)")
    (p0, p1), reward = folded_rewards(model)
    r_cut = cut_rewards(model)
    afford = np.arange(c_n) >= spend  # (C,)
    mass = np.zeros((h + k, n_s, c_n))
    mass[0, :, c0] = model.start
    success = usage = 0.0
    for t in range(h):
        d = mass[t]
        act = pol[t] & afford[None, :]
        m1 = np.where(act, d, 0.0)
        m0 = d - m1
        r1 = r_cut[h - t - 1] if t + k >= h else reward[1]
        success += float(reward[0] @ m0.sum(axis=1) + r1 @ m1.sum(axis=1))
        usage += float(m1.sum())
        if t + 1 < h:
            mass[t + 1] += p0.T @ m0
        if t + k < h:
            moved = p1.T @ m1
            if spend:
                mass[t + k, :, : c_n - spend] += moved[:, spend:]
            else:
                mass[t + k] += moved
    return success, usage
