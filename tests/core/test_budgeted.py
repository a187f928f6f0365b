"""The exact budgeted solver against brute force, plus its invariants."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.exact import evaluate_policy
from helpseek_core.types import TabularModel


def dense(model: TabularModel) -> tuple[np.ndarray, np.ndarray]:
    return model.trans[0].toarray(), model.trans[1].toarray()


def reward(model: TabularModel, a: int, t: int, s: int) -> float:
    """Immediate success of (s, a) at step t: an intervention the horizon cuts gets its j steps.

    (The macro-level semantics, used here for leaves and costs; the independent step-by-step
    reference is tests/core/test_stepwise_reference.py.)
    """
    if a == 0:
        return float(model.succ[0, s])
    return float(model.succ1_steps[min(model.k, model.horizon - t) - 1, s])


def brute_force_value(model: TabularModel, s: int, c: int) -> float:
    """Best success probability over every intervention schedule, by explicit recursion.

    Walks the whole tree of histories (no memo, no Markov assumption): at each node both
    actions are tried and the better is kept, so this is the optimum over all deterministic
    history-dependent schedules.
    """
    p = dense(model)
    h, k, cost = model.horizon, model.k, model.cost

    def q(a: int, t: int, s: int, c: int) -> float:
        if model.leaf_mask[s, a]:
            return float(model.leaf_value[s, a])
        t2, c2 = (t + 1, c) if a == 0 else (t + k, c - cost)
        total = reward(model, a, t, s)
        for s2 in np.flatnonzero(p[a][s]):
            total += p[a][s, s2] * best(t2, int(s2), c2)
        return total

    def best(t: int, s: int, c: int) -> float:
        if t >= h:
            return 0.0
        value = q(0, t, s, c)
        if c >= cost:
            value = max(value, q(1, t, s, c))
        return value

    return best(0, s, c)


def markov_policy_value(model: TabularModel, decide: dict, s: int, c: int) -> float:
    """Success probability of one fixed Markov policy {(t, s, c): intervene?} from (0, s, c)."""
    p = dense(model)
    h, k, cost = model.horizon, model.k, model.cost

    def value(t: int, s: int, c: int) -> float:
        if t >= h:
            return 0.0
        a = 1 if decide.get((t, s, c), False) and c >= cost else 0
        if model.leaf_mask[s, a]:
            return float(model.leaf_value[s, a])
        t2, c2 = (t + 1, c) if a == 0 else (t + k, c - cost)
        return reward(model, a, t, s) + sum(
            p[a][s, s2] * value(t2, int(s2), c2) for s2 in np.flatnonzero(p[a][s])
        )

    return value(0, s, c)


small_mdps = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "n_states": st.integers(1, 4),
        "horizon": st.integers(4, 6),
        "k": st.sampled_from([1, 2]),
        "cost": st.sampled_from([1, 2]),
        "leaf_p": st.sampled_from([0.0, 0.0, 0.25]),
        "density": st.sampled_from([0.4, 0.7]),
        "tie_p": st.sampled_from([0.0, 0.3]),
    }
)


@settings(max_examples=60, deadline=None)
@given(spec=small_mdps, cmax=st.integers(0, 3))
def test_equals_brute_force_over_every_schedule(make_model, spec, cmax):
    model = make_model(**spec)
    sol = solve_budgeted(model, cmax, keep_values=True)
    for s in range(model.n_states):
        for c in range(cmax + 1):
            assert sol.value0[s, c] == pytest.approx(brute_force_value(model, s, c), abs=1e-9)
    # the policy it returns achieves its value and usage (independent forward evaluation)
    for c in range(cmax + 1):
        success, usage = evaluate_policy(model, sol.policy, c)
        assert success == pytest.approx(sol.success[c], abs=1e-9)
        assert usage == pytest.approx(sol.usage[c], abs=1e-9)
        assert usage <= c / model.cost + 1e-9
    # invariants: value non-decreasing in c; c < cost never intervenes; usage within budget
    assert np.all(np.diff(sol.values, axis=2) >= -1e-12)
    assert not sol.policy[:, :, : model.cost].any()
    assert np.all(sol.usage0 <= np.arange(cmax + 1) // model.cost + 1e-9)
    assert np.all(sol.values[model.horizon] == 0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_states=st.integers(1, 2),
    k=st.sampled_from([1, 2]),
    cost=st.sampled_from([1, 2]),
    leaf_p=st.sampled_from([0.0, 0.3]),
)
def test_equals_literal_enumeration_of_markov_policies(make_model, seed, n_states, k, cost, leaf_p):
    """Enumerate every deterministic policy over the (t, s, c) decision points (tiny MDPs)."""
    cmax = cost + (1 if n_states == 1 else 0)  # 8 decision points: 256 policies
    model = make_model(seed, n_states, 4, k=k, cost=cost, leaf_p=leaf_p)
    points = [(t, s, c) for t in range(4) for s in range(n_states) for c in range(cost, cmax + 1)]
    assert len(points) == 8
    sol = solve_budgeted(model, cmax)
    for s in range(n_states):
        best = -math.inf
        for bits in itertools.product([False, True], repeat=len(points)):
            best = max(
                best, markov_policy_value(model, dict(zip(points, bits, strict=True)), s, cmax)
            )
        assert sol.value0[s, cmax] == pytest.approx(best, abs=1e-9)


def test_ties_go_to_proceed(make_model):
    # intervening has exactly the proceed dynamics: it can never be strictly better
    model = make_model(3, 4, 6, k=1, cost=1, tie_p=1.0)
    sol = solve_budgeted(model, 3)
    assert not sol.policy.any()
    assert np.all(sol.usage == 0)
    assert np.allclose(sol.success, sol.success[0])


def test_float32_and_threads_agree_with_float64(make_model):
    model = make_model(11, 4, 6, k=2, cost=1, leaf_p=0.25)
    ref = solve_budgeted(model, 3)
    fast = solve_budgeted(model, 3, with_usage=False)
    assert np.array_equal(fast.policy, ref.policy) and np.array_equal(fast.value0, ref.value0)
    assert np.isnan(fast.usage).all()
    for kw in ({"dtype": np.float32}, {"threads": 2, "block_rows": 1}, {"block_rows": 3}):
        sol = solve_budgeted(model, 3, **kw)
        tol = 1e-5 if kw.get("dtype") == np.float32 else 1e-12
        assert np.allclose(sol.value0, ref.value0, atol=tol)
        assert np.allclose(sol.usage0, ref.usage0, atol=tol * 10)
        if "dtype" not in kw:
            assert np.array_equal(sol.policy, ref.policy)


def test_multithreaded_blocks_on_a_larger_model(make_model):
    model = make_model(5, 60, 12, k=2, cost=1, leaf_p=0.1, density=0.1)
    ref = solve_budgeted(model, 4, threads=1)
    sol = solve_budgeted(model, 4, threads=2, block_rows=7)
    assert np.array_equal(sol.policy, ref.policy)
    assert np.allclose(sol.value0, ref.value0, atol=1e-12)
    assert np.allclose(sol.usage0, ref.usage0, atol=1e-12)


def test_budget_beyond_horizon_saturates(make_model):
    model = make_model(8, 3, 4, k=1, cost=1)
    sol = solve_budgeted(model, 6)
    # with 4 steps at most 4 interventions help: c = 4, 5, 6 are worth the same
    assert np.allclose(sol.value0[:, 4:], sol.value0[:, [4]], atol=1e-12)


def test_block_and_thread_extremes_agree(make_model):
    # one block larger than S, more threads than blocks, and one state per block
    model = make_model(21, 9, 7, k=2, cost=1, leaf_p=0.2, density=0.5)
    ref = solve_budgeted(model, 4, threads=1)
    for kw in ({"block_rows": 10**9, "threads": 3}, {"block_rows": 1, "threads": 2}):
        sol = solve_budgeted(model, 4, **kw)
        assert np.array_equal(sol.policy, ref.policy)
        assert np.array_equal(sol.value0, ref.value0)
        assert np.array_equal(sol.usage0, ref.usage0)


def test_cost_above_budget_never_intervenes(make_model):
    model = make_model(4, 3, 5, k=1, cost=2)
    sol = solve_budgeted(model, 1)
    assert not sol.policy.any()
    assert np.all(sol.usage0 == 0)
    never = np.zeros_like(sol.policy)
    for c in range(2):
        success, usage = evaluate_policy(model, never, c)
        assert success == pytest.approx(sol.success[c], abs=1e-12)
        assert usage == 0


def test_usage_flag_leaves_values_and_policy_unchanged(make_model):
    model = make_model(17, 6, 8, k=2, cost=1, leaf_p=0.25)
    for dtype in (np.float64, np.float32):
        full = solve_budgeted(model, 3, dtype=dtype)
        lean = solve_budgeted(model, 3, dtype=dtype, with_usage=False)
        assert np.array_equal(full.policy, lean.policy)
        assert np.array_equal(full.value0, lean.value0)
        assert np.isnan(lean.usage0).all() and not np.isnan(full.usage0).any()
