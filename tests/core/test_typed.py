"""Several intervention types: the exact DP over (t, s, c_1, c_2) against step-by-step episodes.

The reference plays the episode one environment step at a time (weak agent, or expert A or
expert B for up to its k steps, cut at the horizon H), exhaustively over every schedule,
with one budget per type. It never sees a macro action or a model record.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import BudgetError, ShapeError
from helpseek_core.exact import model_from_policies
from helpseek_core.typed import (
    TypedModel,
    estimate_typed,
    label_typed,
    search_typed_penalties,
    solve_typed,
    solve_typed_penalty,
)


class Ladder:
    """Per-step dynamics of a weak agent and m experts over S states + (success, failure)."""

    def __init__(self, seed: int, n_states: int, m: int = 2, density: float = 0.7) -> None:
        rng = np.random.default_rng(seed)
        self.rows = []
        for _ in range(m + 1):
            w = rng.random((n_states, n_states + 2)) * (
                rng.random((n_states, n_states + 2)) < density
            )
            w[w.sum(axis=1) == 0, rng.integers(n_states + 2)] = 1.0
            self.rows.append(w / w.sum(axis=1, keepdims=True))
        self.n, self.m = n_states, m
        self.start = rng.dirichlet(np.ones(n_states))

    def model(self, horizon: int, ks: tuple[int, ...], costs: tuple[int, ...]) -> TypedModel:
        n, a = self.n, self.m + 1
        p = np.stack([r[:, :n] for r in self.rows])
        succ = np.stack([r[:, n] for r in self.rows])
        fail = np.stack([r[:, n + 1] for r in self.rows])
        eye = np.eye(a)
        parts = tuple(
            model_from_policies(
                p,
                succ,
                fail,
                np.tile(eye[0], (n, 1)),
                np.tile(eye[i + 1], (n, 1)),
                self.start,
                horizon=horizon,
                k=ks[i],
                cost=costs[i],
            )
            for i in range(self.m)
        )
        return TypedModel(parts, tuple(f"type{i}" for i in range(self.m)))


def reference(lad: Ladder, horizon: int, ks, costs, choose):
    """``decision(t, s, c) -> (success, usage per type)`` under ``choose(t, s, c, qs) -> action``."""
    n, m = lad.n, lad.m

    def step(row, value):
        succ, use = float(row[n]), np.zeros(m)
        for s2 in np.flatnonzero(row[:n]):
            v, u = value(int(s2))
            succ += row[s2] * v
            use = use + row[s2] * u
        return succ, use

    @functools.cache
    def decision(t: int, s: int, c: tuple[int, ...]):
        if t >= horizon:
            return 0.0, np.zeros(m)
        qs = {0: step(lad.rows[0][s], lambda s2: decision(t + 1, s2, c))}
        for i in range(m):
            if c[i] >= costs[i]:
                left = tuple(ci - costs[i] if j == i else ci for j, ci in enumerate(c))
                v, u = expert(t, s, left, i, ks[i])
                qs[i + 1] = (v, u + np.eye(m)[i])
        return qs[choose(t, s, c, qs)]

    @functools.cache
    def expert(t: int, s: int, c: tuple[int, ...], i: int, j: int):
        if t >= horizon:
            return 0.0, np.zeros(m)  # cut by the horizon: no credit after H
        nxt = (
            (lambda s2: decision(t + 1, s2, c))
            if j == 1
            else (lambda s2: expert(t + 1, s2, c, i, j - 1))
        )
        return step(lad.rows[i + 1][s], nxt)

    return decision


def best_action(t, s, c, qs):
    return max(qs, key=lambda a: (qs[a][0], -a))


specs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31 - 1),
        "n_states": st.integers(1, 3),
        "horizon": st.integers(3, 6),
        "ks": st.sampled_from([(1, 1), (1, 3), (3, 1), (1, 2), (2, 3)]),
        "costs": st.sampled_from([(1, 1), (1, 2), (2, 1)]),
        "cmax": st.sampled_from([(0, 0), (1, 1), (2, 1), (3, 2), (1, 3)]),
    }
)


@settings(max_examples=60, deadline=None)
@given(spec=specs)
def test_two_types_match_step_by_step_episodes(spec):
    lad = Ladder(spec["seed"], spec["n_states"])
    h, ks, costs, cmax = spec["horizon"], spec["ks"], spec["costs"], spec["cmax"]
    model = lad.model(h, ks, costs)
    sol = solve_typed(model, cmax)
    best = reference(lad, h, ks, costs, best_action)
    follow = reference(lad, h, ks, costs, lambda t, s, c, qs: int(sol.policy[(t, s, *c)]))
    for s in range(lad.n):
        for c in itertools.product(*(range(x + 1) for x in cmax)):
            opt = best(0, s, c)[0]
            got, used = follow(0, s, c)
            assert sol.value0[(s, *c)] == pytest.approx(opt, abs=1e-9), (s, c)
            assert got == pytest.approx(opt, abs=1e-9), ("policy played", s, c)
            for i in range(2):
                assert used[i] == pytest.approx(sol.usage0[(i, s, *c)], abs=1e-9), (i, s, c)
                assert used[i] <= c[i] // costs[i] + 1e-9
    # where one action is strictly better than every other (reference), the solver takes it
    for t in range(h):
        for s in range(lad.n):
            for c in itertools.product(*(range(x + 1) for x in cmax)):
                seen: dict = {}

                def record(tt, ss, cc, q, seen=seen):
                    seen[(tt, ss, cc)] = q
                    return best_action(tt, ss, cc, q)

                reference(lad, h, ks, costs, record)(t, s, c)
                q = seen[(t, s, c)]
                vals = sorted((v[0] for v in q.values()), reverse=True)
                if len(vals) > 1 and vals[0] > vals[1] + 1e-9:
                    assert int(sol.policy[(t, s, *c)]) == max(q, key=lambda a: q[a][0]), (t, s, c)


def test_exhausting_one_type_leaves_the_other_usable():
    lad = Ladder(4, 3)
    model = lad.model(6, (1, 3), (1, 1))
    sol = solve_typed(model, (2, 1))
    # with no budget of type 0 the policy never asks for it, and vice versa
    assert not np.any(sol.policy[:, :, 0, :] == 1)
    assert not np.any(sol.policy[:, :, :, 0] == 2)
    # value non-decreasing in each type's budget
    assert np.all(np.diff(sol.value0, axis=1) >= -1e-12)
    assert np.all(np.diff(sol.value0, axis=2) >= -1e-12)
    # c = 0 for both never intervenes
    assert not np.any(sol.policy[:, :, 0, 0])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_one_type_is_exactly_the_budgeted_solver(make_model, k):
    for seed in range(5):
        base = make_model(seed, 5, 7, k=k, cost=1 + seed % 2, leaf_p=0.25, tie_p=0.2)
        ref = solve_budgeted(base, 4)
        sol = solve_typed(TypedModel.from_tabular(base), (4,))
        assert np.array_equal(sol.policy.astype(bool), ref.policy)
        assert np.allclose(sol.value0, ref.value0, atol=1e-12)
        assert np.allclose(sol.usage0[0], ref.usage0, atol=1e-12)
        assert np.allclose(sol.success, ref.success, atol=1e-12)


def test_labels_and_bad_input(make_model):
    lad = Ladder(1, 2)
    model = lad.model(4, (1, 2), (1, 1))
    sol = solve_typed(model, (1, 1))
    keys = model.parts[0].state_keys
    lab = label_typed(sol, model, np.array([0, 3]), keys[[1, 0]])
    assert lab.shape == (2, 2, 2) and np.array_equal(lab[0], sol.policy[0, 1])
    with pytest.raises(BudgetError, match="solve_typed: need one Cmax per type"):
        solve_typed(model, (1,))
    with pytest.raises(BudgetError, match="solve_typed: budget must be a non-negative integer"):
        solve_typed(model, (1, -1))
    other = make_model(0, 2, 5, k=1)
    with pytest.raises(ShapeError, match="differs from 'type0'"):
        TypedModel((model.parts[0], other), ("type0", "type1"))
    with pytest.raises(ShapeError, match="one distinct name per type"):
        TypedModel(model.parts, ("a", "a"))


@settings(max_examples=40, deadline=None)
@given(spec=specs, r=st.sampled_from([(0.0, 0.0), (0.05, 0.2), (0.3, 0.01), (1.5, 0.1)]))
def test_penalised_two_types_match_step_by_step_episodes(spec, r):
    lad = Ladder(spec["seed"], spec["n_states"])
    h, ks, costs = spec["horizon"], spec["ks"], spec["costs"]
    model = lad.model(h, ks, costs)
    sol = solve_typed_penalty(model, r)
    big = (10**6, 10**6)

    def penalised(t, s, c, qs):
        return max(qs, key=lambda a: (qs[a][0] - float(np.dot(r, qs[a][1])), -a))

    best = reference(lad, h, ks, costs, penalised)
    follow = reference(lad, h, ks, costs, lambda t, s, c, qs: int(sol.policy[t, s]))
    for s in range(lad.n):
        opt_v, opt_u = best(0, s, big)
        got_v, got_u = follow(0, s, big)
        assert sol.value0[s] - np.dot(r, sol.usage0[:, s]) == pytest.approx(
            opt_v - np.dot(r, opt_u), abs=1e-9
        )
        assert got_v == pytest.approx(sol.value0[s], abs=1e-9)
        assert got_u == pytest.approx(sol.usage0[:, s], abs=1e-9)


def test_one_type_penalty_is_the_lagrangian_solver(make_model):
    from helpseek_core.lagrangian import solve_penalty

    for seed in range(4):
        base = make_model(seed, 5, 7, k=2, cost=1, leaf_p=0.2)
        for r in (0.0, 0.07, 0.3):
            ref = solve_penalty(base, r)
            sol = solve_typed_penalty(TypedModel.from_tabular(base), [r])
            assert np.array_equal(sol.policy.astype(bool), ref.policy)
            assert np.allclose(sol.value0, ref.value0) and np.allclose(sol.usage0[0], ref.usage0)


def test_penalty_search_meets_every_budget():
    lad = Ladder(7, 3)
    model = lad.model(8, (1, 3), (1, 1))
    free = solve_typed_penalty(model, [0.0, 0.0])
    budgets = free.usage * np.array([0.5, 0.3])
    sol = search_typed_penalties(model, budgets)
    assert np.all(sol.usage <= budgets + 1e-6)
    assert np.all(sol.penalties > 0)
    # it is never better than the hard-budget optimum with the budgets rounded up
    exact = solve_typed(model, tuple(int(np.ceil(b)) for b in budgets))
    assert sol.success <= exact.success[tuple(int(np.ceil(b)) for b in budgets)] + 1e-9


def simulate(lad: Ladder, horizon, ks, episodes, rng):
    """Random interventions of each type (p = 0.15 each): a typed step log."""
    from helpseek_core.types import StepLog

    n = lad.n
    cols = {c: [] for c in ("ep", "t", "key", "act", "typ", "dur", "nxt", "done", "trunc", "succ")}
    for e in range(episodes):
        s, t, rows, win = int(rng.choice(n, p=lad.start)), 0, [], False
        while True:
            u = rng.random()
            a = 0 if u < 0.7 else (1 if u < 0.85 else 2)
            steps = 1 if a == 0 else ks[a - 1]
            cur, dur, end = s, 0, None
            for _ in range(steps):
                row = lad.rows[a][cur]
                nxt = int(rng.choice(n + 2, p=row))
                dur += 1
                if nxt >= n:
                    end = nxt
                    break
                cur = nxt
                if t + dur >= horizon:
                    break
            if end is not None:
                win = end == n
                rows.append((e, t, s, int(a > 0), max(a - 1, 0), dur, -1, True, False))
                break
            timeout = t + dur >= horizon
            rows.append((e, t, s, int(a > 0), max(a - 1, 0), dur, cur, timeout, timeout))
            if timeout:
                break
            s, t = cur, t + dur
        for r in rows:
            for name, v in zip(cols, (*r, win), strict=True):
                cols[name].append(v)
    m = len(cols["ep"])
    return StepLog(
        episode_id=np.array(cols["ep"]),
        task_id=np.zeros(m),
        t=np.array(cols["t"]),
        state_key=np.array(cols["key"]),
        features=np.zeros((m, 1)),
        action=np.array(cols["act"]),
        intervention_type=np.array(cols["typ"]),
        cost=np.array(cols["act"]),
        duration=np.array(cols["dur"]),
        next_state_key=np.array(cols["nxt"]),
        done=np.array(cols["done"]),
        truncated=np.array(cols["trunc"]),
        success=np.array(cols["succ"]),
        behavior_p=np.full(m, 0.15),
    )


def test_estimated_typed_model_converges_to_the_exact_one():
    lad = Ladder(3, 3, density=0.9)
    h, ks = 6, (1, 2)
    exact = lad.model(h, ks, (1, 1))
    log = simulate(lad, h, ks, 6000, np.random.default_rng(0))
    est = estimate_typed(log, h, ks, (1, 1), ("type0", "type1"))
    assert est.parts[0].state_keys.tolist() == [0, 1, 2]
    a = solve_typed(exact, (2, 1))
    b = solve_typed(est, (2, 1))
    assert np.max(np.abs(a.success - b.success)) < 0.03
    for i in range(2):
        assert (
            np.abs(est.parts[i].trans[1].toarray() - exact.parts[i].trans[1].toarray()).max() < 0.05
        )
    with pytest.raises(ShapeError, match="intervention_type 1, expected 0..0"):
        estimate_typed(log, h, ks[:1], (1,), ("only",))
