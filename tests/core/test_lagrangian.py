"""The Lagrangian (penalty) solver and the paper's reward/usage search."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import BudgetError
from helpseek_core.exact import evaluate_policy
from helpseek_core.lagrangian import penalty_usage, search_penalty, solve_penalty
from helpseek_core.types import TabularModel


def brute_force_penalised(model: TabularModel, s: int, r: float) -> float:
    """max over every schedule of P(success) - r * E[interventions], by explicit recursion."""
    p = (model.trans[0].toarray(), model.trans[1].toarray())
    h, k = model.horizon, model.k

    def q(a: int, t: int, s: int) -> float:
        if model.leaf_mask[s, a]:
            return float(model.leaf_value[s, a]) - r * a
        t2 = t + 1 if a == 0 else t + k
        cut = model.succ1_steps[min(k, h - t) - 1, s]  # an intervention the horizon cuts
        total = float(model.succ[0, s] if a == 0 else cut) - r * a
        for s2 in np.flatnonzero(p[a][s]):
            total += p[a][s, s2] * best(t2, int(s2))
        return total

    def best(t: int, s: int) -> float:
        return 0.0 if t >= h else max(q(0, t, s), q(1, t, s))

    return best(0, s)


small_mdps = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "n_states": st.integers(1, 4),
        "horizon": st.integers(4, 6),
        "k": st.sampled_from([1, 2]),
        "leaf_p": st.sampled_from([0.0, 0.25]),
        "tie_p": st.sampled_from([0.0, 0.3]),
    }
)


@settings(max_examples=40, deadline=None)
@given(spec=small_mdps, r=st.sampled_from([0.0, 0.01, 0.05, 0.2, 1.5]))
def test_penalty_solver_equals_brute_force(make_model, spec, r):
    model = make_model(**spec)
    sol = solve_penalty(model, r)
    for s in range(model.n_states):
        expected = brute_force_penalised(model, s, r)
        assert sol.value0[s] - r * sol.usage0[s] == pytest.approx(expected, abs=1e-9)
    success, usage = evaluate_policy(model, sol.policy)
    assert success == pytest.approx(sol.success, abs=1e-9)
    assert usage == pytest.approx(sol.usage, abs=1e-9)
    if r > 1:  # a penalty above the largest possible gain never intervenes
        assert not sol.policy.any()


@settings(max_examples=40, deadline=None)
@given(spec=small_mdps, budget=st.sampled_from([0.0, 0.3, 1.0, 2.5]))
def test_usage_non_increasing_in_r_and_search_meets_budget(make_model, spec, budget):
    model = make_model(**spec)
    grid = np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 60)])
    success, usage = penalty_usage(model, grid)
    assert np.all(np.diff(usage) <= 1e-9)
    assert np.all(np.diff(success) <= 1e-9)  # less help, less success
    per_state = [solve_penalty(model, r).usage0 for r in grid[::6]]
    assert np.all(np.diff(np.array(per_state), axis=0) <= 1e-9)
    found = search_penalty(model, budget)
    assert found.budget == budget
    assert found.usage <= budget + 1e-9
    if found.penalty > 0:  # smallest: a slightly smaller penalty breaks the budget
        assert penalty_usage(model, [max(found.penalty - 1e-8, 0.0)])[1][0] > budget
    else:
        assert usage[0] <= budget + 1e-9


def test_search_on_known_curve(make_model):
    model = make_model(21, 4, 6, k=1, leaf_p=0.0)
    never = float(penalty_usage(model, [5.0])[1][0])
    at_zero = float(penalty_usage(model, [0.0])[1][0])
    assert never == 0.0 and at_zero > 0.5
    assert search_penalty(model, at_zero + 1).penalty == 0.0
    mid = search_penalty(model, at_zero / 2)
    assert 0 < mid.penalty < 1 and mid.usage <= at_zero / 2 + 1e-9


def test_zero_budget_matches_the_budgeted_solver_at_c0(make_model):
    # a budget of 0 in expectation means no intervention at all: the c = 0 budgeted value
    model = make_model(4, 4, 6, k=2, leaf_p=0.0)
    zero = search_penalty(model, 0.0)
    exact = solve_budgeted(model, 0)
    assert zero.usage == 0.0
    assert zero.success == pytest.approx(exact.success[0], abs=1e-12)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "x"])
def test_bad_budget(make_model, bad):
    model = make_model(1, 2, 4)
    with pytest.raises(BudgetError, match="search_penalty: budget must be"):
        search_penalty(model, bad)


@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_bad_penalty(make_model, bad):
    with pytest.raises(BudgetError, match="solve_penalty: penalty r must be a finite number >= 0"):
        solve_penalty(make_model(1, 2, 4), bad)
