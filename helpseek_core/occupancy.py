"""Occupancy of a budgeted policy: how often it intervenes, by a forward pass from the start.

:func:`dp_intervention_rate` pushes the state-budget distribution of the exact solver's policy
through the model (mass at (t, s, c) proceeds to t + 1 or intervenes to t + k with c - cost)
and divides the expected interventions by the expected decision points, for every starting
budget. The manifest records it as the helper's target intervention rate.
"""

from __future__ import annotations

import numpy as np

from helpseek_core.budgeted import folded_rewards
from helpseek_core.types import BudgetedSolution, TabularModel

__all__ = ["dp_intervention_rate", "intervention_rate"]


def dp_intervention_rate(model: TabularModel, solution: BudgetedSolution) -> np.ndarray:
    """(C,) expected interventions per decision point for each starting budget c0 <= cmax.

    A forward pass of the state-budget occupancy under the DP policy from the start
    distribution: mass at (t, s, c) proceeds to t + 1 or intervenes to t + k with c - cost.
    """
    return intervention_rate(model, solution.policy)


def intervention_rate(model: TabularModel, policy: np.ndarray) -> np.ndarray:
    """(C,) expected interventions per decision point of any budgeted policy (H, S, C) bool.

    Same pass as :func:`dp_intervention_rate`; the policy must not intervene where the
    remaining budget is below the cost (the solver's and the helper's never do).
    """
    (p0, p1), _ = folded_rewards(model)
    p0t, p1t = p0.T.tocsr(), p1.T.tocsr()
    h, s_n, c_n = policy.shape
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
        pol = policy[t][:, None, :]  # (S, 1, C)
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
