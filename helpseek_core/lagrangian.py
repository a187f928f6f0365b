"""The paper's Lagrangian solver and its reward/usage search (docs/design.md §4).

For a penalty r >= 0 per intervention, over a finite horizon H::

    Q_r(t, s, 0) = succ0[s]     + sum_s' P0[s, s'] V_r(t + 1, s')
    Q_r(t, s, 1) = succ1[s] - r + sum_s' P1[s, s'] V_r(t + k, s')
    V_r = max_a Q_r  (ties -> proceed: intervene only if Q_r(1) > Q_r(0) + tie_tol)

An intervention starting at t with t + k >= H is cut by the horizon exactly as in
:mod:`helpseek_core.budgeted`: its reward is ``succ1_steps[H - t - 1]`` and its next states
are worth 0.

No budget state: the budget is met only in expectation. Because Q_r is linear in the
policy's success probability S and usage U, ``V_r = S - r U`` exactly, so the solver carries
S and U (two columns per penalty) and evaluates many penalties in one pass.

:func:`search_penalty` finds the smallest r whose mean usage from the start distribution is
<= C: r = 0 when that already holds; otherwise multisection (bisection that evaluates
``points`` penalties per pass, ``points=1`` is plain bisection) between 0 and a penalty that
surely meets the budget (any r > 1 never intervenes when values are probabilities), then a
confirming grid on [0, r] checks that usage is non-increasing and that no smaller grid
penalty meets the budget (if one does, the search restarts below it).
"""

from __future__ import annotations

import math

import numpy as np

from helpseek_core.budgeted import cut_rewards, folded_rewards
from helpseek_core.errors import BudgetError, SolverError
from helpseek_core.types import LagrangianSolution, TabularModel

__all__ = ["penalty_usage", "search_penalty", "solve_penalty"]

_TIE_TOL = 1e-12
_USAGE_TOL = 1e-9  # usage within this of the budget counts as meeting it


def _penalty_pass(
    model: TabularModel, rs: np.ndarray, keep_policy: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass for penalties ``rs`` (R,); returns policy (H, S, R), S0 and U0 (S, R).

    Without ``keep_policy`` the policy array is empty (shape (0, S, R)).
    """
    (p0, p1), reward = folded_rewards(model)
    r_cut = cut_rewards(model)
    s_n, h, k = model.n_states, int(model.horizon), int(model.k)
    n_r = rs.shape[0]
    # Slot t % (k+1) holds [success | usage] at step t, (S, 2R).
    ring = np.zeros((k + 1, s_n, 2 * n_r))
    zeros = np.zeros((s_n, 2 * n_r))
    policy = np.zeros((h if keep_policy else 0, s_n, n_r), dtype=bool)
    for t in range(h - 1, -1, -1):
        nxt0 = ring[(t + 1) % (k + 1)]
        nxt1 = zeros if t + k >= h else ring[(t + k) % (k + 1)]
        y0 = np.asarray(p0 @ nxt0)
        y1 = np.asarray(p1 @ nxt1)
        y0[:, :n_r] += reward[0][:, None]
        y1[:, :n_r] += (r_cut[h - t - 1] if t + k >= h else reward[1])[:, None]
        y1[:, n_r:] += 1.0
        q0 = y0[:, :n_r] - rs * y0[:, n_r:]
        q1 = y1[:, :n_r] - rs * y1[:, n_r:]
        pol = q1 > q0 + _TIE_TOL
        if keep_policy:
            policy[t] = pol
        both = np.concatenate([pol, pol], axis=1)
        ring[t % (k + 1)] = np.where(both, y1, y0)
    return policy, ring[0, :, :n_r].copy(), ring[0, :, n_r:].copy()


def _check_penalty(r: float, where: str) -> float:
    r = float(r)
    if not math.isfinite(r) or r < 0:
        raise BudgetError(f"{where}: penalty r must be a finite number >= 0, got {r!r}")
    return r


def penalty_usage(model: TabularModel, penalties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start-distribution (success, usage) of the penalty-r optimum for each r, in one pass.

    Returns two arrays shaped like ``penalties``. Cheap way to trace the success/usage curve.
    """
    rs = np.atleast_1d(np.asarray(penalties, dtype=np.float64))
    for r in rs:
        _check_penalty(r, "penalty_usage")
    _, s0, u0 = _penalty_pass(model, rs, keep_policy=False)
    return model.start @ s0, model.start @ u0


def solve_penalty(model: TabularModel, r: float, budget: float | None = None) -> LagrangianSolution:
    """Optimal policy for the penalised objective P(success) - r * E[interventions].

    ``policy[t, s]`` intervenes only when Q_r(1) exceeds Q_r(0) by more than 1e-12 (ties go
    to proceed). ``value0`` / ``usage0`` are the success probability and expected
    interventions of that policy from (t=0, s); ``success`` / ``usage`` average them over the
    start distribution. ``budget`` is only recorded. Raises BudgetError for r < 0 or NaN.
    """
    r = _check_penalty(r, "solve_penalty")
    policy, s0, u0 = _penalty_pass(model, np.array([r]), keep_policy=True)
    return LagrangianSolution(
        penalty=r,
        policy=policy[:, :, 0],
        value0=s0[:, 0],
        usage0=u0[:, 0],
        success=float(model.start @ s0[:, 0]),
        usage=float(model.start @ u0[:, 0]),
        budget=budget,
    )


def search_penalty(
    model: TabularModel,
    budget: float,
    *,
    points: int = 16,
    atol: float = 1e-9,
    confirm: int = 64,
    max_doublings: int = 60,
) -> LagrangianSolution:
    """Find the smallest penalty r >= 0 whose mean start usage is <= ``budget`` (the paper's search).

    Returns ``solve_penalty(model, r, budget)`` at the r found (within ``atol``: the penalty
    just below it, r - atol, exceeds the budget). ``points`` penalties are evaluated per
    multisection pass; ``confirm`` grid points on [0, r] check the result. Raises BudgetError
    for a negative or NaN budget and SolverError if no penalty meets it (only possible with
    leaf values outside [0, 1]) or if usage is found increasing in r.
    """
    where = "search_penalty"
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise BudgetError(f"{where}: budget must be a number, got {budget!r}") from None
    if not math.isfinite(budget) or budget < 0:
        raise BudgetError(f"{where}: budget must be a finite number >= 0, got {budget!r}")
    if points < 1 or confirm < 2:
        raise BudgetError(f"{where}: points must be >= 1 and confirm >= 2")

    def usage(rs: np.ndarray) -> np.ndarray:
        return penalty_usage(model, rs)[1]

    limit = budget + _USAGE_TOL
    if usage(np.array([0.0]))[0] <= limit:
        return solve_penalty(model, 0.0, budget)
    hi = 2.0
    for _ in range(max_doublings):
        if usage(np.array([hi]))[0] <= limit:
            break
        hi *= 2.0
    else:
        raise SolverError(f"{where}: no penalty up to {hi:.3g} brings usage down to {budget}")
    lo = 0.0  # invariant: usage(lo) > budget >= usage(hi)
    for _ in range(3):  # a confirming grid that finds a smaller r restarts the search below it
        while hi - lo > atol:
            grid = np.linspace(lo, hi, points + 2)[1:-1]
            ok = usage(grid) <= limit
            first = int(np.argmax(ok)) if ok.any() else points
            lo = lo if first == 0 else float(grid[first - 1])
            hi = hi if first == points else float(grid[first])
        grid = np.linspace(0.0, hi, confirm)
        u = usage(grid)
        # Exact optima have usage non-increasing in r; a policy optimal only up to the tie
        # tolerance per decision can rise by at most 2 H tol / (r2 - r1) between grid points
        # (the exchange argument), which is large at tiny penalties: allow exactly that.
        slack = 1e-7 + 2.0 * model.horizon * _TIE_TOL / np.diff(grid)
        rising = np.diff(u) > slack
        if np.any(rising):
            i = int(np.argmax(rising))
            raise SolverError(
                f"{where}: usage increases with r between r={grid[i]:.6g} ({u[i]:.6g}) and "
                f"r={grid[i + 1]:.6g} ({u[i + 1]:.6g})"
            )
        early = (u <= limit) & (grid < lo)
        if not early.any():
            break
        hi = float(grid[int(np.argmax(early))])
        lo = 0.0 if int(np.argmax(early)) == 0 else float(grid[int(np.argmax(early)) - 1])
    return solve_penalty(model, hi, budget)
