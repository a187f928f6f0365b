"""Bad input raises a named error whose message says what is wrong and where."""

import numpy as np
import pytest
import scipy.sparse as sp

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.errors import (
    BudgetError,
    InputError,
    ProbabilityError,
    ShapeError,
    UnknownStateError,
)
from helpseek_core.exact import evaluate_policy, model_from_policies
from helpseek_core.labels import label_budgeted, label_lagrangian, labelable
from helpseek_core.lagrangian import solve_penalty
from helpseek_core.types import TabularModel


def two_state_arrays():
    p = np.array([[[0.5, 0.5], [0.0, 0.5]], [[0.0, 1.0], [0.0, 0.0]]])  # (A=2, S=2, S=2)
    succ = np.array([[0.0, 0.25], [0.0, 1.0]])
    fail = np.array([[0.0, 0.25], [0.0, 0.0]])
    weak = np.array([[1.0, 0.0], [1.0, 0.0]])
    expert = np.array([[0.0, 1.0], [0.0, 1.0]])
    return dict(
        P=p,
        succ=succ,
        fail=fail,
        weak_policy=weak,
        expert_policy=expert,
        start=np.array([1.0, 0.0]),
    )


def test_exact_model_from_arrays_and_k_steps():
    arrays = two_state_arrays()
    m1 = model_from_policies(**arrays, horizon=5, k=1, cost=1, state_keys=np.array([7, 9]))
    assert m1.state_keys.tolist() == [7, 9]
    assert m1.trans[1].toarray().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    m2 = model_from_policies(**arrays, horizon=5, k=2, cost=1)
    # two expert steps from state 0: 0 -> 1 -> success
    assert m2.succ[1].tolist() == [1.0, 1.0] and m2.trans[1].nnz == 0
    # matrix power of the augmented chain with absorbing terminals, as a cross-check
    e = np.zeros((4, 4))
    e[:2, :2] = arrays["P"][1]
    e[:2, 2], e[:2, 3], e[2, 2], e[3, 3] = arrays["succ"][1], arrays["fail"][1], 1, 1
    assert np.allclose(np.linalg.matrix_power(e, 2)[:2, 2], m2.succ[1])


def test_rows_not_summing_to_one():
    arrays = two_state_arrays()
    arrays["fail"] = np.array([[0.0, 0.5], [0.0, 0.0]])
    with pytest.raises(
        ProbabilityError, match=r"P\[0\] \+ succ \+ fail at state \(1,\) sums to 1.25"
    ):
        model_from_policies(**arrays, horizon=4)
    arrays = two_state_arrays()
    arrays["weak_policy"] = np.array([[1.0, 0.0], [0.5, 0.0]])
    with pytest.raises(ProbabilityError, match=r"weak_policy row \(1,\) sums to 0.5, not 1"):
        model_from_policies(**arrays, horizon=4)
    with pytest.raises(ProbabilityError, match=r"key 4\), action 1 sums to 0.5, not 1"):
        TabularModel(
            np.array([3, 4]),
            (sp.eye(2) * 0.5, sp.csr_matrix([[0, 0.5], [0, 0]])),
            succ=np.full((2, 2), 0.5),
            fail=np.zeros((2, 2)),
            start=np.array([1.0, 0]),
            horizon=3,
        )


def test_nan_inputs():
    arrays = two_state_arrays()
    arrays["succ"] = np.array([[0.0, np.nan], [0.0, 1.0]])
    with pytest.raises(
        ProbabilityError, match=r"model_from_policies: succ is NaN or negative at \(0, 1\)"
    ):
        model_from_policies(**arrays, horizon=4)
    arrays = two_state_arrays()
    arrays["P"] = arrays["P"].copy()
    arrays["P"][0, 0, 0] = np.nan
    with pytest.raises(ProbabilityError, match=r"P\[0\] has NaN or negative entries"):
        model_from_policies(**arrays, horizon=4)
    with pytest.raises(
        ProbabilityError, match=r"model_from_policies: start is NaN or negative at \(0,\)"
    ):
        model_from_policies(**{**two_state_arrays(), "start": np.array([np.nan, 1.0])}, horizon=4)


def test_negative_or_fractional_budget(make_model):
    model = make_model(0, 3, 4)
    for bad in (-1, 1.5, "2", None):
        with pytest.raises(
            BudgetError, match=f"solve_budgeted: budget must be a non-negative integer, got {bad!r}"
        ):
            solve_budgeted(model, bad)
    sol = solve_budgeted(model, 2)
    with pytest.raises(
        BudgetError, match="evaluate_policy: budget must be a non-negative integer, got -1"
    ):
        evaluate_policy(model, sol.policy, -1)
    with pytest.raises(BudgetError, match="evaluate_policy: budget 3 exceeds the policy's Cmax 2"):
        evaluate_policy(model, sol.policy, 3)
    with pytest.raises(BudgetError, match="k must be a positive integer, got 0"):
        model_from_policies(**two_state_arrays(), horizon=4, k=0)
    with pytest.raises(ShapeError, match="solve_budgeted: dtype must be float64 or float32"):
        solve_budgeted(model, 1, dtype=np.int32)


def test_shapes():
    arrays = two_state_arrays()
    with pytest.raises(ShapeError, match=r"model_from_policies: P must have shape \(A, S, S\)"):
        model_from_policies(**{**arrays, "P": np.zeros((2, 2, 3))}, horizon=4)
    with pytest.raises(ShapeError, match=r"expert_policy has shape \(2, 3\), expected \(2, 2\)"):
        model_from_policies(**{**arrays, "expert_policy": np.ones((2, 3)) / 3}, horizon=4)


def test_labels_and_unknown_states(make_model):
    model = make_model(2, 3, 5, k=1, cost=1)
    sol = solve_budgeted(model, 2)
    keys = model.state_keys
    t = np.array([0, 4, 2])
    rows = np.array([keys[1], keys[0], keys[2]])
    labels = label_budgeted(sol, model, t, rows)
    assert labels.shape == (3, 3)
    assert np.array_equal(labels, sol.policy[t, [1, 0, 2]])
    lag = solve_penalty(model, 0.01)
    assert np.array_equal(label_lagrangian(lag, model, t, rows), lag.policy[t, [1, 0, 2]])
    unknown = int(keys.max()) + 1
    with pytest.raises(
        UnknownStateError, match=f"label_budgeted: row 1 has state key {unknown}, unknown"
    ):
        label_budgeted(sol, model, np.array([0, 1]), np.array([keys[0], unknown]))
    with pytest.raises(
        UnknownStateError, match=r"label_lagrangian: row 0 has step t=5, outside \[0, H=5\)"
    ):
        label_lagrangian(lag, model, np.array([5]), np.array([keys[0]]))
    with pytest.raises(UnknownStateError, match=r"row 0 has step t=-1"):
        label_budgeted(sol, model, np.array([-1]), np.array([keys[0]]))
    with pytest.raises(UnknownStateError, match=f"unknown state key {unknown}"):
        model.index_of(np.array([unknown]))
    # non-strict: unlabelable rows are masked out and labelled "proceed"
    t2, k2 = np.array([0, 9, 1]), np.array([keys[0], keys[0], unknown])
    assert labelable(model, t2, k2).tolist() == [True, False, False]
    loose = label_budgeted(sol, model, t2, k2, strict=False)
    assert not loose[1:].any() and np.array_equal(loose[0], sol.policy[0, 0])
    with pytest.raises(ShapeError, match="t and state_keys must be 1-D of equal length"):
        label_budgeted(sol, model, np.array([0, 1]), np.array([keys[0]]))
    with pytest.raises(ShapeError, match="does not fit the model"):
        label_budgeted(sol, make_model(2, 4, 5), t, rows)
    assert issubclass(UnknownStateError, InputError)
