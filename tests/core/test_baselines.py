import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.baselines import (
    BASELINES,
    CALIBRATABLE,
    BatchContext,
    DecisionContext,
    Policy,
    calibrate,
    make_policy,
)
from helpseek_core.errors import BudgetError, InputError, ProbabilityError, ShapeError
from helpseek_core.types import BudgetedSolution


def dp_solution(h=6, s=4, cmax=2, seed=0):
    rng = np.random.default_rng(seed)
    policy = rng.random((h, s, cmax + 1)) < 0.6
    policy[:, :, 0] = False
    z = np.zeros((s, cmax + 1))
    return BudgetedSolution(policy, z, z, np.zeros(cmax + 1), np.zeros(cmax + 1))


def all_policies():
    return [
        make_policy("never"),
        make_policy("always"),
        make_policy("random", rate=0.5),
        make_policy("prm_threshold", tau=0.6),
        make_policy("gain_threshold", delta=0.0),
        make_policy("dp_table", solution=dp_solution()),
    ]


def test_registry_contents_and_errors():
    assert set(BASELINES) == {
        "never",
        "always",
        "random",
        "prm_threshold",
        "gain_threshold",
        "dp_table",
    }
    assert CALIBRATABLE == {"random": "rate", "prm_threshold": "tau", "gain_threshold": "delta"}
    for p in all_policies():
        assert isinstance(p, Policy) and p.name in BASELINES
    with pytest.raises(InputError, match="unknown baseline 'oracle'"):
        make_policy("oracle")
    with pytest.raises(InputError, match="bad parameters for 'random'"):
        make_policy("random", tau=0.3)
    with pytest.raises(ProbabilityError, match="rate must be in"):
        make_policy("random", rate=1.5)
    with pytest.raises(InputError, match="no 'prm' scores"):
        make_policy("prm_threshold", tau=0.5).decide(
            DecisionContext(0, 5, 1, 1), np.random.default_rng()
        )
    with pytest.raises(BudgetError, match="remaining"):
        DecisionContext(t=0, steps_left=5, remaining=-1, cost=1)


def test_threshold_rules_single_and_batch_agree():
    rng = np.random.default_rng(0)
    prm = rng.random((200, 2))
    batch = BatchContext(
        t=np.zeros(200),
        steps_left=np.full(200, 5),
        remaining=rng.integers(0, 3, 200),
        cost=1,
        prm=prm,
    )
    afford = batch.remaining >= 1
    np.testing.assert_array_equal(
        make_policy("prm_threshold", tau=0.3).decide_batch(batch, rng), (prm[:, 0] < 0.3) & afford
    )
    np.testing.assert_array_equal(
        make_policy("gain_threshold", delta=0.1).decide_batch(batch, rng),
        (prm[:, 1] - prm[:, 0] > 0.1) & afford,
    )
    for p in all_policies():
        if p.name == "random":
            continue
        single = [p.decide(batch.row(i), rng) for i in range(batch.n)]
        np.testing.assert_array_equal(single, p.decide_batch(batch, rng))


def test_dp_table_lookup_clips_budget_and_proceeds_when_unknown():
    sol = dp_solution()
    pol = make_policy("dp_table", solution=sol)
    rng = np.random.default_rng(0)
    t, s = np.nonzero(sol.policy[:, :, 2])
    ctx = DecisionContext(t=int(t[0]), steps_left=1, remaining=7, cost=1, state_index=int(s[0]))
    assert pol.decide(ctx, rng)  # c = 7 > Cmax = 2 reads column 2
    assert not pol.decide(DecisionContext(t=int(t[0]), steps_left=1, remaining=7, cost=1), rng)
    assert not pol.decide(
        DecisionContext(t=6, steps_left=0, remaining=2, cost=1, state_index=0), rng
    )
    batch = BatchContext(
        t=[int(t[0]), 0], steps_left=[1, 1], remaining=[7, 2], cost=1, state_index=[int(s[0]), -1]
    )
    np.testing.assert_array_equal(pol.decide_batch(batch, rng), [True, False])
    with pytest.raises(ShapeError, match="out of range"):
        pol.decide(DecisionContext(t=0, steps_left=1, remaining=1, cost=1, state_index=99), rng)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), budget=st.integers(0, 4), cost=st.integers(1, 3))
def test_budget_never_violated_in_live_loop(seed, budget, cost):
    rng = np.random.default_rng(seed)
    horizon = 6
    for policy in all_policies():
        for _episode in range(5):
            remaining, used = budget, 0
            for t in range(horizon):
                ctx = DecisionContext(
                    t=t,
                    steps_left=horizon - t,
                    remaining=remaining,
                    cost=cost,
                    features=rng.normal(size=3),
                    prm=rng.random(2),
                    state_index=int(rng.integers(-1, 4)) if rng.random() < 0.9 else None,
                )
                if ctx.state_index == -1:
                    ctx = DecisionContext(
                        ctx.t, ctx.steps_left, ctx.remaining, ctx.cost, ctx.features, ctx.prm
                    )
                if policy.decide(ctx, rng):
                    remaining -= cost
                    used += cost
            assert remaining >= 0 and used <= budget, policy.name


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), target=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_calibration_hits_target_within_one_over_n(n, target, seed):
    rng = np.random.default_rng(seed)
    batch = BatchContext(
        t=np.zeros(n), steps_left=np.full(n, 3), remaining=1, cost=1, prm=rng.random((n, 2))
    )
    for name in ("prm_threshold", "gain_threshold"):
        params = calibrate(name, batch, target)
        rate = make_policy(name, **params).decide_batch(batch, rng).mean()
        assert abs(rate - target) <= 1 / n + 1e-12, (name, params)
    assert calibrate("random", batch, target) == {"rate": target}


def test_calibration_ties_and_unaffordable_rows():
    prm = np.array([[0.5, 0.9]] * 4 + [[0.2, 0.3]] * 2 + [[0.9, 0.9]] * 4)
    batch = BatchContext(t=np.zeros(10), steps_left=np.full(10, 3), remaining=1, cost=1, prm=prm)
    # P(proceed) values: 0.2 x2, 0.5 x4, 0.9 x4 -> achievable rates 0, 0.2, 0.6, 1.0
    params = calibrate("prm_threshold", batch, 0.35)
    assert params == {"tau": 0.5}  # rate 0.2 is closer to 0.35 than 0.6
    assert make_policy("prm_threshold", **params).decide_batch(batch, None).mean() == 0.2
    assert calibrate("prm_threshold", batch, 0.4)["tau"] == 0.5  # exact draw -> lower rate
    assert calibrate("prm_threshold", batch, 1.0)["tau"] > 0.9
    # half the rows cannot afford an intervention: the rate caps at 0.5, random rescales
    half = BatchContext(
        t=np.zeros(10), steps_left=np.full(10, 3), remaining=[0, 1] * 5, cost=1, prm=prm
    )
    assert calibrate("random", half, 0.25) == {"rate": 0.5}
    p = make_policy("gain_threshold", **calibrate("gain_threshold", half, 0.9))
    assert p.decide_batch(half, None).mean() == 0.5
    with pytest.raises(InputError, match="calibratable"):
        calibrate("dp_table", batch, 0.5)
