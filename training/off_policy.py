"""Off-policy estimates from logged behaviour probabilities: importance sampling and DR.

A budgeted intervention policy is judged on logged episodes whose decisions were taken with a
known probability (``behavior_p``: P(intervene) of the logging policy, e.g. Phase I's random
p). The remaining budget at a logged row is the starting budget minus the cost of the
episode's logged interventions before it — the policy's own, as long as it agrees with the log.

- :func:`is_estimate`: per-episode importance weights prod 1[a = pi] / b(a) and outcomes.
- :func:`policy_q`: Q^pi(t, s, c, a) of a policy table on a tabular model, by a backward pass
  (leaves folded, horizon-cut interventions earn their j < k steps: the solvers' conventions).
- :func:`dr_estimate`: per-episode doubly robust values (Jiang & Li 2016) with that model's
  Q^pi as the control variate: sum_t rho_t r_t - rho_t Q(x_t, a_t) + rho_{t-1} V(x_t), unbiased
  whatever the model, lower variance the better the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from helpseek_core.budgeted import cut_rewards, folded_rewards
from helpseek_core.model import align_keys
from helpseek_core.types import StepLog, TabularModel

__all__ = ["RowDecide", "dr_estimate", "is_estimate", "logged_budget", "policy_q"]

RowDecide = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(rows (n,), remaining budget c (n,), steps left (n,)) -> (n,) bool intervene."""


def _starts(log: StepLog) -> np.ndarray:
    ep = log.episode_id
    return np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])


def logged_budget(log: StepLog, budget: int, cost: int) -> np.ndarray:
    """(N,) remaining budget at each row: ``budget`` minus the episode's earlier logged costs."""
    start = _starts(log)
    spent = log.action.astype(np.int64) * cost
    before = np.cumsum(spent) - spent
    before -= np.repeat(before[start], np.diff(np.r_[start, len(log)]))
    return budget - before


def _ratios(
    log: StepLog, steps_left: np.ndarray, decide: RowDecide, budget: int, cost: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (1[a = pi] / b(a), the policy's action pi, the remaining budget c)."""
    c = logged_budget(log, budget, cost)
    act = log.action.astype(bool)
    pi = np.zeros(len(log), bool)
    ok = c >= cost
    if ok.any():
        rows = np.flatnonzero(ok)
        pi[rows] = decide(rows, c[rows], np.maximum(steps_left[rows], 0))
    p = log.behavior_p.astype(np.float64)
    pb = np.where(act, p, 1.0 - p)
    return np.where(pi == act, 1.0 / np.maximum(pb, 1e-12), 0.0), pi, c


def is_estimate(
    log: StepLog, steps_left: np.ndarray, decide: RowDecide, budget: int, cost: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode (importance weight, success) of a budgeted policy started with ``budget``."""
    ratio, _, _ = _ratios(log, steps_left, decide, budget, cost)
    start = _starts(log)
    return np.multiply.reduceat(ratio, start), log.success[start].astype(np.float64)


def policy_q(
    model: TabularModel, table: np.ndarray, t: np.ndarray, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Q^pi of the policy ``table`` (H, S, C) at rows (t (n,), state index (n,)): two (n, C).

    Backward pass: Q0 = r0 + P0 V[t+1, c]; Q1 = r1 + P1 V[t+k, c - cost] (c >= cost; a macro
    the horizon cuts after j = H - t < k steps earns ``cut_rewards[j-1]``); V = Q at the
    policy's action; V[t >= H] = 0. Where c < cost, Q1 is set to Q0 (intervening is refused).
    """
    (p0, p1), reward = folded_rewards(model)
    cut = cut_rewards(model)
    h, k, cost = model.horizon, model.k, model.cost
    n_s, c_n = model.n_states, table.shape[2]
    ring = np.zeros((k + 1, n_s, c_n))  # V[t'] at t' % (k + 1); never written = V[>= H] = 0
    q0_out = np.zeros((t.shape[0], c_n))
    q1_out = np.zeros((t.shape[0], c_n))
    afford = np.arange(c_n) >= cost
    for step in range(h - 1, -1, -1):
        q0 = reward[0][:, None] + p0 @ ring[(step + 1) % (k + 1)]
        if step + k <= h:
            cont = p1 @ ring[(step + k) % (k + 1)]
            q1 = np.repeat(reward[1][:, None], c_n, axis=1)
            q1[:, cost:] += cont[:, : c_n - cost]
        else:
            q1 = np.repeat(cut[h - step - 1][:, None], c_n, axis=1)
        q1 = np.where(afford[None, :], q1, q0)
        v = np.where(table[step] & afford[None, :], q1, q0)
        sel = t == step
        q0_out[sel], q1_out[sel] = q0[state[sel]], q1[state[sel]]
        ring[step % (k + 1)] = v
    return q0_out, q1_out


def dr_estimate(
    log: StepLog, steps_left: np.ndarray, decide: RowDecide, budget: int, cost: int,
    model: TabularModel, table: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Per-episode doubly robust values of the policy (``table`` is its plan on ``model``).

    Rows whose state the model does not know (or t >= H) get Q = V = 0: plain IS there.
    """
    ratio, pi, c = _ratios(log, steps_left, decide, budget, cost)
    idx = align_keys(model.state_keys, log.state_key)
    t = log.t.astype(np.int64)
    known = (idx >= 0) & (t < model.horizon)
    q0, q1 = policy_q(model, table, np.where(known, t, -1), np.maximum(idx, 0))
    cc = np.clip(c, 0, table.shape[2] - 1)
    rows = np.arange(len(log))
    q_a = np.where(log.action.astype(bool), q1[rows, cc], q0[rows, cc]) * known
    v_pi = np.where(pi, q1[rows, cc], q0[rows, cc]) * known
    r = (log.done & log.success).astype(np.float64)
    start = _starts(log)
    out = np.zeros(start.shape[0])
    for i, (a, b) in enumerate(zip(start, np.r_[start[1:], len(log)], strict=True)):
        rho = np.cumprod(ratio[a:b])
        prev = np.r_[1.0, rho[:-1]]
        out[i] = float(np.sum(rho * r[a:b] - rho * q_a[a:b] + prev * v_pi[a:b]))
    return out
