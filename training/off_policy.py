"""Off-policy estimates from logged behaviour probabilities: importance sampling and DR.

A budgeted intervention policy is judged on logged episodes whose decisions were taken with a
known probability (``behavior_p``: P(intervene) of the logging policy, e.g. Phase I's random
p). The remaining budget at a logged row is the starting budget minus the cost of the
episode's logged interventions before it — the policy's own, as long as it agrees with the log.

- :func:`prefix_weights`: rho_t = P_pi(logged actions up to t) / P_b(the same), P_b the
  mixture of the episodes' logged p (multiple importance sampling) where each episode has one.
- :func:`is_estimate`: per-episode importance weights (rho at the last row) and outcomes.
- :func:`policy_q`: Q^pi(t, s, c, a) of a policy table on a tabular model, by a backward pass
  (leaves folded, horizon-cut interventions earn their j < k steps: the solvers' conventions).
- :func:`dr_estimate`: per-episode doubly robust values (Jiang & Li 2016) with that model's
  Q^pi as the control variate: sum_t rho_t r_t - rho_t Q(x_t, a_t) + rho_{t-1} V(x_t), unbiased
  whatever the model, lower variance the better the model; :func:`wdr_value` its weighted
  (self-normalised) form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from helpseek_core.budgeted import cut_rewards, folded_rewards
from helpseek_core.model import align_keys
from helpseek_core.types import StepLog, TabularModel

__all__ = [
    "RowDecide",
    "dr_estimate",
    "dr_terms",
    "is_estimate",
    "logged_budget",
    "policy_q",
    "prefix_weights",
    "wdr_value",
]

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


def _episode_p(log: StepLog, start: np.ndarray) -> np.ndarray | None:
    """(E,) each episode's behaviour p, or None when p varies within an episode."""
    p = log.behavior_p.astype(np.float64)
    first = np.repeat(p[start], np.diff(np.r_[start, len(log)]))
    return p[start] if np.array_equal(p, first) else None


def prefix_weights(
    log: StepLog, steps_left: np.ndarray, decide: RowDecide, budget: int, cost: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (rho_t = P_pi(actions up to t) / P_b(actions up to t), pi's action, c).

    When each episode was logged at one p (Phase I's random p, an explore session's p), the
    behaviour is the *mixture* of those p (their frequencies in the log) and P_b is the
    mixture's probability of the prefix (multiple importance sampling, balance heuristic):
    still unbiased, and a deterministic policy's weight is bounded by 1 / (share of the p
    that agree with it) instead of growing like (1 / (1 - p)) ** T. Otherwise P_b is the
    product of the rows' own probabilities.
    """
    c = logged_budget(log, budget, cost)
    act = log.action.astype(bool)
    pi = np.zeros(len(log), bool)
    ok = c >= cost
    if ok.any():
        rows = np.flatnonzero(ok)
        pi[rows] = decide(rows, c[rows], np.maximum(steps_left[rows], 0))
    start = _starts(log)
    lens = np.diff(np.r_[start, len(log)])
    ep_p = _episode_p(log, start)
    grid = np.unique(ep_p) if ep_p is not None else log.behavior_p.astype(np.float64)
    if ep_p is not None:
        share = np.array([np.mean(ep_p == g) for g in grid])
        probs = np.where(act[:, None], grid[None, :], 1.0 - grid[None, :])  # (N, P)
    else:
        share = np.ones(1)
        p = log.behavior_p.astype(np.float64)
        probs = np.where(act, p, 1.0 - p)[:, None]
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    matched = pi == act
    rho = np.zeros(len(log))
    for a, n in zip(start, lens, strict=True):
        cum = np.cumsum(logp[a : a + n], axis=0)  # (n, P) log P_b_p(prefix)
        mix = np.exp(cum) @ share
        ok_prefix = np.cumprod(matched[a : a + n]).astype(bool)
        rho[a : a + n] = np.where(ok_prefix, 1.0 / np.maximum(mix, 1e-300), 0.0)
    return rho, pi, c


def is_estimate(
    log: StepLog, steps_left: np.ndarray, decide: RowDecide, budget: int, cost: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode (importance weight, success) of a budgeted policy started with ``budget``."""
    rho, _, _ = prefix_weights(log, steps_left, decide, budget, cost)
    last = np.r_[_starts(log)[1:], len(log)] - 1
    return rho[last], log.success[last].astype(np.float64)


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


def dr_terms(
    log: StepLog,
    steps_left: np.ndarray,
    decide: RowDecide,
    budget: int,
    cost: int,
    model: TabularModel,
    table: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, L) per episode and decision index: rho_t, rho_{t-1}, r_t, Q(x_t, a_t), V(x_t).

    ``table`` is the policy's plan on ``model`` (the control variate). After an episode ends
    its rho stays at its last value and r = Q = V = 0. Rows whose state the model does not know
    (or t >= H) get Q = V = 0: plain importance sampling there.
    """
    rho_all, pi, c = prefix_weights(log, steps_left, decide, budget, cost)
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
    lens = np.diff(np.r_[start, len(log)])
    n, width = start.shape[0], int(lens.max())
    rho, prev = np.zeros((n, width)), np.zeros((n, width))
    rr, qa, vv = np.zeros((n, width)), np.zeros((n, width)), np.zeros((n, width))
    for i, (a, m) in enumerate(zip(start, lens, strict=True)):
        rho[i, :m], rho[i, m:] = rho_all[a : a + m], rho_all[a + m - 1]
        prev[i, 0], prev[i, 1:] = 1.0, rho[i, :-1]
        rr[i, :m], qa[i, :m], vv[i, :m] = r[a : a + m], q_a[a : a + m], v_pi[a : a + m]
    return rho, prev, rr, qa, vv


def dr_estimate(
    log: StepLog,
    steps_left: np.ndarray,
    decide: RowDecide,
    budget: int,
    cost: int,
    model: TabularModel,
    table: np.ndarray,
) -> np.ndarray:
    """Per-episode doubly robust values (their mean is the DR estimate; unbiased)."""
    rho, prev, r, qa, v = dr_terms(log, steps_left, decide, budget, cost, model, table)
    return (rho * r - rho * qa + prev * v).sum(axis=1)


def wdr_value(terms: tuple[np.ndarray, ...], pick: np.ndarray | None = None) -> float:
    """Weighted doubly robust (Thomas & Brunskill 2016) of :func:`dr_terms` (rows ``pick``).

    rho_t and rho_{t-1} are normalised over episodes per decision index: biased but consistent,
    and bounded like weighted IS where a few large weights dominate.
    """
    rho, prev, r, qa, v = (x if pick is None else x[pick] for x in terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.nan_to_num(rho / rho.sum(axis=0, keepdims=True))
        wp = np.nan_to_num(prev / prev.sum(axis=0, keepdims=True))
    return float((w * r - w * qa + wp * v).sum())
