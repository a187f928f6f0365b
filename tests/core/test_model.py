"""Estimating the tabular model from a step log."""

import numpy as np
import pytest

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import BudgetError, ProbabilityError, ShapeError
from helpseek_core.model import align_keys, estimate_model, model_state_keys
from helpseek_core.types import StepLog, TabularModel


def make_log(rows: list[tuple], duration: list[int] | None = None) -> StepLog:
    """rows: (episode, t, state_key, action, next_key, done, truncated, success)."""
    ep, t, key, act, nxt, done, trunc, succ = (np.array(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return StepLog(
        episode_id=ep,
        task_id=np.zeros(n),
        t=t,
        state_key=key,
        features=np.zeros((n, 2)),
        action=act,
        intervention_type=np.zeros(n),
        cost=act,
        duration=np.ones(n) if duration is None else np.array(duration),
        next_state_key=nxt,
        done=done,
        truncated=trunc,
        success=succ,
        behavior_p=np.full(n, 0.3),
    )


def simulate_log(model: TabularModel, episodes: int, p_help: float, rng) -> StepLog:
    """Roll the model's own dynamics with random interventions; log every decision point."""
    p = (model.trans[0].toarray(), model.trans[1].toarray())
    n_s, keys = model.n_states, model.state_keys
    rows = []
    for e in range(episodes):
        s, t, ep_rows, win = int(rng.choice(n_s, p=model.start)), 0, [], False
        while True:
            a = int(rng.random() < p_help)
            dist = np.concatenate([p[a][s], [model.succ[a, s], model.fail[a, s]]])
            nxt = int(rng.choice(n_s + 2, p=dist / dist.sum()))
            t2 = t + (model.k if a else 1)
            if nxt >= n_s:
                win = nxt == n_s
                ep_rows.append([e, t, keys[s], a, -1, True, False])
                break
            timeout = t2 >= model.horizon
            ep_rows.append([e, t, keys[s], a, keys[nxt], timeout, timeout])
            if timeout:
                break
            s, t = nxt, t2
        rows += [(*r, win) for r in ep_rows]
    return make_log(rows)


def test_counts_on_a_hand_built_log():
    rows = [
        # episode 0: 10 -proceed-> 20 -intervene-> success
        (0, 0, 10, 0, 20, False, False, True),
        (0, 1, 20, 1, 99, True, False, True),
        # episode 1: 10 -proceed-> 10 -proceed-> 30 (time-out: 30 is a real next state)
        (1, 0, 10, 0, 10, False, False, False),
        (1, 1, 10, 0, 30, True, True, False),
        # episode 2: 20 -proceed-> failure
        (2, 0, 20, 0, 77, True, False, False),
    ]
    log = make_log(rows)
    model = estimate_model(log, horizon=5, k=1, cost=1)
    assert model.state_keys.tolist() == [10, 20, 30]  # 99 / 77 are terminal rows' keys
    assert model_state_keys(log).tolist() == [10, 20, 30]
    p0 = model.trans[0].toarray()
    assert p0[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert model.succ[1, 1] == 1.0 and model.fail[0, 1] == 1.0
    assert model.counts.tolist() == [[3, 0], [1, 1], [0, 0]]
    assert model.start.tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    # leaves: (10, intervene) never seen, state 30 seen only as a next state
    assert model.leaf_mask.tolist() == [[False, True], [False, False], [True, True]]
    # Monte-Carlo values: pair rate -> state rate -> next-state rate -> log mean
    assert model.leaf_value[0, 1] == pytest.approx(1 / 3)  # state 10 as a state: 1 win of 3
    assert model.leaf_value[2].tolist() == [0.0, 0.0]  # 30 as a next state: episode 1 lost


def test_success_within_j_steps_and_cut_interventions():
    """k = 3: success after 1, 2 or 3 expert steps; an intervention the step limit cut short."""
    rows = [
        (0, 0, 10, 1, 99, True, False, True),  # won on the expert's 1st step
        (1, 0, 10, 1, 99, True, False, True),  # ... on its 3rd
        (2, 0, 10, 1, 99, True, False, False),  # failure terminal on its 2nd
        (3, 0, 10, 1, 20, False, False, False),  # a full 3-step macro to 20
        (3, 3, 20, 0, 20, True, True, False),  # time-out after one weak step
        (4, 0, 10, 0, 20, False, False, False),
        (4, 1, 20, 1, 30, True, True, False),  # cut by H = 3 after 2 expert steps: not counted
    ]
    log = make_log(rows, duration=[1, 3, 2, 3, 1, 1, 2])
    model = estimate_model(log, horizon=3, k=3, cost=1)
    assert model.state_keys.tolist() == [10, 20, 30]  # 30 stays a (leaf) state
    assert model.counts.tolist() == [[1, 4], [1, 0], [0, 0]]  # the cut row is not a visit
    assert model.succ1_steps[:, 0].tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert model.succ[1, 0] == pytest.approx(0.5) and model.fail[1, 0] == pytest.approx(0.25)
    assert model.trans[1].toarray()[0].tolist() == pytest.approx([0, 0.25, 0])


def test_min_count_and_prm_leaf_values():
    rows = [(e, 0, 10, e % 2, 20, True, True, e < 3) for e in range(6)]
    log = make_log(rows)
    prm = np.array([[0.9, 0.8], [0.7, 0.6]])
    model = estimate_model(log, horizon=4, k=1, cost=1, n_min=4, leaf_values=prm)
    assert model.leaf_mask.tolist() == [[True, True], [True, True]]  # 3 visits < 4
    assert model.leaf_value.tolist() == prm.tolist()
    sol = solve_budgeted(model, 1)
    assert sol.value0[0].tolist() == pytest.approx([0.9, 0.9])  # proceed 0.9 beats 0.8
    model = estimate_model(log, horizon=4, k=1, cost=1, n_min=3, leaf_values=prm)
    assert model.leaf_mask.tolist() == [[False, False], [True, True]]


def test_estimate_converges_to_the_true_model(make_model):
    rng = np.random.default_rng(3)
    truth = make_model(12, 3, 6, k=2, cost=1, density=0.8)
    log = simulate_log(truth, 4000, 0.4, rng)
    model = estimate_model(log, horizon=6, k=2, cost=1)
    assert np.array_equal(model.state_keys, truth.state_keys)
    assert not model.leaf_mask.any()
    for a in (0, 1):
        assert np.abs(model.trans[a].toarray() - truth.trans[a].toarray()).max() < 0.05
        assert np.abs(model.succ[a] - truth.succ[a]).max() < 0.05
    assert np.abs(model.start - truth.start).max() < 0.05
    est, true = solve_budgeted(model, 2), solve_budgeted(truth, 2)
    assert np.abs(est.success - true.success).max() < 0.05


def test_align_keys():
    assert align_keys(np.array([3, 5, 9]), np.array([5, 4, 9, 10, 3])).tolist() == [1, -1, 2, -1, 0]
    assert align_keys(np.array([], dtype=np.int64), np.array([1])).tolist() == [-1]


def test_bad_logs():
    good = [(0, 0, 10, 0, 20, True, True, True)]
    with pytest.raises(ShapeError, match="estimate_model: no row with t == 0"):
        estimate_model(make_log([(0, 1, 10, 0, 20, True, True, True)]), 4, 1, 1)
    with pytest.raises(BudgetError, match="n_min must be an integer >= 1, got 0"):
        estimate_model(make_log(good), 4, 1, 1, n_min=0)
    with pytest.raises(BudgetError, match="row 0 is an intervention costing 1, expected 2"):
        estimate_model(make_log([(0, 0, 10, 1, 20, True, True, True)]), 4, 1, 2)
    with pytest.raises(ShapeError, match=r"leaf_values has shape \(3,\), expected \(S=2, 2\)"):
        estimate_model(make_log(good), 4, 1, 1, leaf_values=np.zeros(3))
    with pytest.raises(ProbabilityError, match="not finite for state key 20, action 0"):
        estimate_model(make_log(good), 4, 1, 1, leaf_values=np.array([[0.5, 0.5], [np.nan, 0.5]]))
