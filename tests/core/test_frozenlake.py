"""FrozenLake 8x8: the exact solver against the real gymnasium env and against pymdptoolbox.

The model is exact (from ``env.unwrapped.P``): weak agent = epsilon-noisy optimal policy,
expert = the optimal policy (value iteration on P(success)).
"""

import numpy as np
import pytest
import scipy.sparse as sp

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.exact import evaluate_policy, model_from_policies

# tests/core runs on a core-only install (numpy/scipy): these two checks need the extras
gym = pytest.importorskip("gymnasium")
mdptoolbox = pytest.importorskip("mdptoolbox.mdp")

EPS = 0.2
CMAX = 3


def frozenlake_arrays(env: gym.Env):
    """Non-terminal states, P (A, S, S), succ and fail (A, S) from env.unwrapped.P."""
    u = env.unwrapped
    desc = u.desc.ravel()
    states = np.flatnonzero((desc != b"H") & (desc != b"G"))
    index = {int(s): i for i, s in enumerate(states)}
    n_a, n_s = u.action_space.n, states.size
    rows, cols, vals, acts = [], [], [], []
    succ, fail = np.zeros((n_a, n_s)), np.zeros((n_a, n_s))
    for i, s in enumerate(states):
        for a in range(n_a):
            for p, s2, reward, term in u.P[int(s)][a]:
                if term and reward > 0:
                    succ[a, i] += p
                elif term:
                    fail[a, i] += p
                else:
                    rows.append(i), cols.append(index[s2]), vals.append(p), acts.append(a)
    rows, cols, vals, acts = map(np.asarray, (rows, cols, vals, acts))
    mats = [
        sp.csr_matrix((vals[acts == a], (rows[acts == a], cols[acts == a])), shape=(n_s, n_s))
        for a in range(n_a)
    ]
    return states, mats, succ, fail


def optimal_policy(mats, succ) -> np.ndarray:
    """Value iteration on P(success); returns a deterministic (S, A) policy."""
    v = np.zeros(mats[0].shape[0])
    for _ in range(2000):
        q = np.stack([succ[a] + mats[a] @ v for a in range(len(mats))], axis=1)
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) < 1e-12:
            break
        v = v_new
    pi = np.zeros_like(q)
    pi[np.arange(q.shape[0]), q.argmax(axis=1)] = 1.0
    return pi


@pytest.fixture(scope="module")
def lake():
    env = gym.make("FrozenLake-v1", map_name="8x8", success_rate=0.8)
    states, mats, succ, fail = frozenlake_arrays(env)
    expert = optimal_policy(mats, succ)
    weak = (1 - EPS) * expert + EPS / expert.shape[1]
    start = np.zeros(states.size)
    start[0] = 1.0  # state 0 is the start cell S
    arrays = dict(P=mats, succ=succ, fail=fail, weak_policy=weak, expert_policy=expert, start=start)
    return env, states, expert, arrays


def rollouts(env, states, expert, policy, horizon, k, cost, budget, n, rng):
    """Run the solver's policy in the real env; return per-episode success and interventions."""
    u = env.unwrapped
    index = {int(s): i for i, s in enumerate(states)}
    greedy = expert.argmax(axis=1)
    u.reset(seed=int(rng.integers(2**31)))
    wins, used = np.zeros(n, bool), np.zeros(n, int)
    for e in range(n):
        s, _ = u.reset()
        t, c, done, reward = 0, budget, False, 0.0
        while t < horizon and not done:
            i = index[int(s)]
            if c >= cost and policy[t, i, c]:
                c -= cost
                used[e] += 1
                for _ in range(k):  # the expert acts k steps (the whole macro action)
                    s, reward, done, _, _ = u.step(int(greedy[index[int(s)]]))
                    if done:
                        break
                t += k
            else:
                a = int(rng.integers(4)) if rng.random() < EPS else int(greedy[i])
                s, reward, done, _, _ = u.step(a)
                t += 1
        wins[e] = done and reward > 0
    return wins, used


def test_predicted_success_matches_rollouts_in_the_real_env(lake):
    env, states, expert, arrays = lake
    horizon, k, cost = 100, 2, 1
    model = model_from_policies(**arrays, horizon=horizon, k=k, cost=cost)
    sol = solve_budgeted(model, CMAX)
    assert sol.success[CMAX] > sol.success[0] + 0.03 and sol.usage[CMAX] > 1  # help matters
    n = 2500
    wins, used = rollouts(
        env, states, expert, sol.policy, horizon, k, cost, CMAX, n, np.random.default_rng(7)
    )
    p = sol.success[CMAX]
    assert abs(wins.mean() - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert abs(used.mean() - sol.usage[CMAX]) < 4 * used.std() / np.sqrt(n) + 1e-9
    assert used.max() <= CMAX
    # the exact forward evaluation of the same policy agrees with the backward pass
    assert evaluate_policy(model, sol.policy, CMAX)[0] == pytest.approx(p, abs=1e-9)


def budget_augmented(model, cmax):
    """(s, c) states plus one absorbing terminal; reward = P(success) on the transition."""
    n_s, c_n, cost = model.n_states, cmax + 1, model.cost
    n = n_s * c_n + 1
    term = n - 1
    p = np.zeros((2, n, n))
    r = np.zeros((n, 2))
    dense = [m.toarray() for m in model.trans]
    for s in range(n_s):
        for c in range(c_n):
            x = s * c_n + c
            p[0, x, np.arange(n_s) * c_n + c] = dense[0][s]
            p[0, x, term] = model.succ[0, s] + model.fail[0, s]
            r[x, 0] = model.succ[0, s]
            if c >= cost:
                p[1, x, np.arange(n_s) * c_n + c - cost] = dense[1][s]
                p[1, x, term] = model.succ[1, s] + model.fail[1, s]
                r[x, 1] = model.succ[1, s]
            else:  # not affordable: an action no optimiser would take
                p[1, x, term] = 1.0
                r[x, 1] = -10.0
    p[:, term, term] = 1.0
    return p, r


def test_matches_pymdptoolbox_finite_horizon(lake):
    _, _, _, arrays = lake
    horizon = 60
    model = model_from_policies(**arrays, horizon=horizon, k=1, cost=1)
    sol = solve_budgeted(model, CMAX)
    p, r = budget_augmented(model, CMAX)
    fh = mdptoolbox.FiniteHorizon(p, r, 1.0, horizon)
    fh.run()
    theirs = fh.V[:-1, 0].reshape(model.n_states, CMAX + 1)
    assert np.max(np.abs(theirs - sol.value0)) < 1e-9
    assert sol.success[0] < sol.success[CMAX]
