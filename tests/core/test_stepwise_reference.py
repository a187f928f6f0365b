"""Both solvers against a reference that shares none of their semantics.

The reference never sees a macro action or a :class:`TabularModel`: it plays the episode one
environment step at a time, as the live runner does (``training/envs/runner.py``). At a
decision point the weak agent takes one step, or (budget permitting) the expert takes over
for up to k steps; the episode ends at the horizon H, whatever the expert was doing. The
solvers are handed the macro model that :func:`model_from_policies` builds from the same
per-step dynamics. Checked, for k in {1, 2, 3} and horizons that are not multiples of k:

- the optimal success probability (exhaustive recursion over every schedule);
- the policy each solver returns, *played step by step*: its success and its expected
  interventions equal what the solver predicts, and equal the optimum;
- every decision where one action is strictly better: the solver picks it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.exact import model_from_policies
from helpseek_core.lagrangian import solve_penalty
from helpseek_core.types import TabularModel


class StepMDP:
    """Per-step dynamics: ``weak[s]`` and ``expert[s]`` over S states + (success, failure)."""

    def __init__(self, seed: int, n_states: int, density: float = 0.7) -> None:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(2):
            w = rng.random((n_states, n_states + 2)) * (
                rng.random((n_states, n_states + 2)) < density
            )
            w[w.sum(axis=1) == 0, rng.integers(n_states + 2)] = 1.0
            rows.append(w / w.sum(axis=1, keepdims=True))
        self.weak, self.expert = rows
        self.n = n_states
        self.start = rng.dirichlet(np.ones(n_states))

    def macro_model(self, horizon: int, k: int, cost: int) -> TabularModel:
        """The solvers' input: weak = env action 0, expert = env action 1."""
        n = self.n
        p = np.stack([self.weak[:, :n], self.expert[:, :n]])
        eye = np.eye(2)
        return model_from_policies(
            p,
            succ=np.stack([self.weak[:, n], self.expert[:, n]]),
            fail=np.stack([self.weak[:, n + 1], self.expert[:, n + 1]]),
            weak_policy=np.tile(eye[0], (n, 1)),
            expert_policy=np.tile(eye[1], (n, 1)),
            start=self.start,
            horizon=horizon,
            k=k,
            cost=cost,
        )


def play(
    mdp: StepMDP, horizon: int, k: int, cost: int, choose
) -> tuple[functools._lru_cache_wrapper, functools._lru_cache_wrapper]:
    """Step-by-step episode recursion; ``choose(t, s, c, q0, q1) -> intervene?``.

    Returns ``(decision, expert)``: ``decision(t, s, c)`` = (success, interventions) from a
    decision point; ``expert(t, s, c, j)`` = the same while the expert still has j steps.
    ``q0``/``q1`` passed to ``choose`` are the success values of the two actions there.
    """
    n = mdp.n

    @functools.cache
    def decision(t: int, s: int, c: int) -> tuple[float, float]:
        if t >= horizon:
            return 0.0, 0.0  # time is up: the episode ended without success
        q0 = _step(mdp.weak[s], lambda s2: decision(t + 1, s2, c))
        if c < cost:
            return q0
        q1 = expert(t, s, c - cost, k)
        q1 = (q1[0], q1[1] + 1.0)
        return q1 if choose(t, s, c, q0, q1) else q0

    @functools.cache
    def expert(t: int, s: int, c: int, j: int) -> tuple[float, float]:
        if t >= horizon:
            return 0.0, 0.0  # the horizon cuts the intervention: no credit after H
        nxt = (
            (lambda s2: decision(t + 1, s2, c))
            if j == 1
            else (lambda s2: expert(t + 1, s2, c, j - 1))
        )
        return _step(mdp.expert[s], nxt)

    def _step(row: np.ndarray, value) -> tuple[float, float]:
        succ, use = float(row[n]), 0.0
        for s2 in np.flatnonzero(row[:n]):
            v, u = value(int(s2))
            succ += row[s2] * v
            use += row[s2] * u
        return succ, use

    return decision, expert


def optimum(mdp: StepMDP, horizon: int, k: int, cost: int, penalty: float | None = None):
    """Exhaustive optimum: at each decision point try both and keep the better.

    With ``penalty`` r the objective is success - r * interventions (no budget state).
    """
    r = 0.0 if penalty is None else penalty
    decision, _ = play(
        mdp, horizon, k, cost, lambda t, s, c, q0, q1: q1[0] - r * q1[1] > q0[0] - r * q0[1]
    )
    return decision


def budgeted_mdps():
    return st.fixed_dictionaries(
        {
            "seed": st.integers(0, 2**31 - 1),
            "n_states": st.integers(1, 3),
            "horizon": st.integers(4, 8),
            "k": st.sampled_from([1, 2, 3]),
            "cost": st.sampled_from([1, 1, 2]),
            "cmax": st.integers(0, 3),
        }
    )


def check_budgeted(seed: int, n_states: int, horizon: int, k: int, cost: int, cmax: int) -> None:
    mdp = StepMDP(seed, n_states)
    model = mdp.macro_model(horizon, k, cost)
    sol = solve_budgeted(model, cmax)
    best = optimum(mdp, horizon, k, cost)
    follow, _ = play(mdp, horizon, k, cost, lambda t, s, c, q0, q1: bool(sol.policy[t, s, c]))
    for s in range(n_states):
        for c in range(cmax + 1):
            opt = best(0, s, c)[0]
            got, used = follow(0, s, c)
            assert sol.value0[s, c] == pytest.approx(opt, abs=1e-9), (s, c)
            assert got == pytest.approx(opt, abs=1e-9), ("the solver's policy played", s, c)
            assert used == pytest.approx(sol.usage0[s, c], abs=1e-9), ("usage", s, c)
            assert used <= c // cost + 1e-9
    # decisions: where one action is strictly better (by the reference), the solver takes it
    for t in range(horizon):
        for s in range(n_states):
            for c in range(cost, cmax + 1):
                q0 = mdp.weak[s, n_states] + sum(
                    mdp.weak[s, s2] * best(t + 1, s2, c)[0] for s2 in range(n_states)
                )
                q1 = optimum_expert(mdp, horizon, k, cost, best, t, s, c - cost)
                if q1 > q0 + 1e-9:
                    assert sol.policy[t, s, c], (t, s, c, q0, q1)
                elif q0 > q1 + 1e-9:
                    assert not sol.policy[t, s, c], (t, s, c, q0, q1)


def optimum_expert(mdp, horizon, k, cost, best, t, s, c) -> float:
    """Success of handing over to the expert at (t, s) with c left afterwards, then acting optimally."""
    n = mdp.n

    def run(t: int, s: int, j: int) -> float:
        if t >= horizon:
            return 0.0
        total = mdp.expert[s, n]
        for s2 in range(n):
            nxt = best(t + 1, s2, c)[0] if j == 1 else run(t + 1, s2, j - 1)
            total += mdp.expert[s, s2] * nxt
        return float(total)

    return run(t, s, k)


@settings(max_examples=80, deadline=None)
@given(spec=budgeted_mdps())
def test_budgeted_solver_matches_step_by_step_episodes(spec):
    check_budgeted(**spec)


@pytest.mark.parametrize(
    ("k", "horizon"), [(2, 5), (3, 7), (3, 8), (2, 7), (3, 4)]
)  # horizons that are not multiples of k
def test_budgeted_solver_horizon_not_a_multiple_of_k(k, horizon):
    for seed in range(6):
        check_budgeted(seed, 3, horizon, k, 1, 3)


@settings(max_examples=60, deadline=None)
@given(spec=budgeted_mdps(), r=st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.6]))
def test_penalty_solver_matches_step_by_step_episodes(spec, r):
    n_states, horizon, k, cost = spec["n_states"], spec["horizon"], spec["k"], spec["cost"]
    mdp = StepMDP(spec["seed"], n_states)
    model = mdp.macro_model(horizon, k, cost)
    sol = solve_penalty(model, r)
    big = 10**6  # no budget state: a budget nobody reaches
    best = optimum(mdp, horizon, k, cost, penalty=r)
    follow, _ = play(mdp, horizon, k, cost, lambda t, s, c, q0, q1: bool(sol.policy[t, s]))
    for s in range(n_states):
        opt_s, opt_u = best(0, s, big)
        got_s, got_u = follow(0, s, big)
        assert sol.value0[s] - r * sol.usage0[s] == pytest.approx(opt_s - r * opt_u, abs=1e-9)
        assert got_s == pytest.approx(sol.value0[s], abs=1e-9), ("the policy played", s)
        assert got_u == pytest.approx(sol.usage0[s], abs=1e-9), ("usage", s)


def test_old_full_credit_near_the_horizon_is_gone():
    """The k > 1 regression: an intervention asked fewer than k steps before H is cut there.

    One state; the weak agent never wins; the expert wins with probability 0.5 per step.
    With H = 4 and k = 3, an intervention at t = 3 gets one expert step (0.5), at t = 2 two
    (0.75); the old solver credited the full three-step 0.875 at both.
    """
    mdp = StepMDP(0, 1)
    mdp.weak = np.array([[1.0, 0.0, 0.0]])  # stay, never win
    mdp.expert = np.array([[0.5, 0.5, 0.0]])
    model = mdp.macro_model(horizon=4, k=3, cost=1)
    assert model.succ1_steps[:, 0].tolist() == pytest.approx([0.5, 0.75, 0.875])
    sol = solve_budgeted(model, 1, keep_values=True)
    # asked at t = 3, the expert gets one step: 0.5, not the full 0.875
    assert sol.values[3, 0, 1] == pytest.approx(0.5)
    assert sol.values[2, 0, 1] == pytest.approx(0.75)
    assert sol.value0[0, 1] == pytest.approx(0.875)
