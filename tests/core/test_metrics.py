import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpseek_core.errors import BudgetError, InputError, ProbabilityError, ShapeError
from helpseek_core.metrics import (
    CPT_LEVELS,
    apgr,
    auroc,
    brier_score,
    budget_violations,
    cpt,
    ece,
    intervention_rate,
    interventions_per_episode,
    mean_pgr,
    oracle_ratio,
    pgr,
    pgr_curve,
    success_rate,
    wilson_interval,
)

probs = st.lists(st.floats(0, 1), min_size=1, max_size=40)


# ---- hand-computed cases -------------------------------------------------------------


def test_success_rate_and_wilson_hand_case():
    r = success_rate([1, 1, 0, 1, 0, 0, 0, 1, 1, 1])
    assert r.value == 0.6 and r.n == 10
    # Wilson 95%, k=6, n=10 (z=1.959964): centre 0.57553, half 0.25433
    assert r.low == pytest.approx(0.312673, abs=1e-5)
    assert r.high == pytest.approx(0.831820, abs=1e-5)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.161125, abs=1e-5)


def test_usage_rates_and_violations():
    assert interventions_per_episode([0, 2, 4]) == 2.0
    assert intervention_rate([1, 3], [10, 10]) == 0.2
    assert budget_violations([0, 3, 4, 5], 3) == 2
    assert budget_violations([0, 3, 4], [0, 2, 4]) == 1


def test_pgr_and_oracle_ratio():
    assert pgr(0.5, 0.2, 0.8) == pytest.approx(0.5)
    np.testing.assert_allclose(pgr(np.array([0.2, 0.8, 0.9]), 0.2, 0.8), [0, 1, 7 / 6])
    assert math.isnan(pgr(0.5, 0.4, 0.4))  # zero gap guarded
    assert oracle_ratio(0.45, 0.9) == 0.5
    assert math.isnan(oracle_ratio(0.0, 0.0))


def test_pgr_curve_prepends_origin_and_sorts():
    u, g = pgr_curve([2.0, 1.0], [0.8, 0.5], 0.2, 0.8)
    np.testing.assert_allclose(u, [0, 1, 2])
    np.testing.assert_allclose(g, [0, 0.5, 1])


def test_apgr_hand_case():
    # PGR curve (0,0) -> (1,0.5) -> (2,1), flat 1 until U_always=4:
    # area = 0.25 + 0.75 + 2 = 3, / 4 = 0.75
    assert apgr([1.0, 2.0], [0.5, 0.8], 0.2, 0.8, usage_always=4.0) == pytest.approx(0.75)
    # curve cut at U_always = 1.5: area 0.25 + 0.5*(0.5+0.75)/2 = 0.5625, / 1.5 = 0.375
    assert apgr([1.0, 2.0], [0.5, 0.8], 0.2, 0.8, usage_always=1.5) == pytest.approx(0.375)
    assert mean_pgr([0.5, 0.8], 0.2, 0.8) == pytest.approx(0.75)


def test_cpt_hand_case():
    usage, success = [1.0, 2.0, 4.0], [0.5, 0.65, 0.74]  # PGR 0.5, 0.75, 0.9
    assert cpt(usage, success, 0.2, 0.8, 0.5) == pytest.approx(1.0)
    assert cpt(usage, success, 0.2, 0.8, 0.25) == pytest.approx(0.5)  # on the anchor segment
    assert cpt(usage, success, 0.2, 0.8, 0.8) == pytest.approx(2 + (0.05 / 0.15) * 2)
    assert math.isnan(cpt(usage, success, 0.2, 0.8, 0.95))
    assert CPT_LEVELS == (0.5, 0.8, 0.95)


def test_calibration_hand_cases():
    p = [0.05, 0.15, 0.95, 1.0]
    y = [0, 1, 1, 1]
    # bins: 0 -> {0.05 (y0)}, 1 -> {0.15 (y1)}, 9 -> {0.95, 1.0 (y1, y1)}
    expected = (0.05 + 0.85 + abs(1.95 - 2)) / 4
    assert ece(p, y) == pytest.approx(expected)
    assert brier_score(p, y) == pytest.approx((0.05**2 + 0.85**2 + 0.05**2 + 0) / 4)
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # tie counts 1/2
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


# ---- named errors --------------------------------------------------------------------


def test_bad_input_raises_named_errors():
    with pytest.raises(ShapeError, match="length mismatch"):
        brier_score([0.1, 0.2], [1])
    with pytest.raises(ProbabilityError, match="outside \\[0, 1\\]"):
        ece([0.1, 1.2], [0, 1])
    with pytest.raises(ProbabilityError, match="NaN"):
        brier_score([0.1, np.nan], [0, 1])
    with pytest.raises(InputError, match="0/1"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ShapeError, match="empty"):
        success_rate([])
    with pytest.raises(BudgetError):
        apgr([1.0], [0.5], 0.2, 0.8, usage_always=0.0)
    with pytest.raises(ShapeError, match="length mismatch"):
        intervention_rate([1, 2], [3])
    with pytest.raises(InputError):
        wilson_interval(5, 3)


# ---- properties ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), p=probs)
def test_ece_in_unit_interval_and_brier_perfect(data, p):
    y = data.draw(st.lists(st.integers(0, 1), min_size=len(p), max_size=len(p)))
    e = ece(p, y)
    assert 0.0 <= e <= 1.0
    assert brier_score(np.array(y, float), y) == 0.0
    assert ece(np.array(y, float), y) == 0.0


@settings(max_examples=60, deadline=None)
@given(data=st.data(), scores=st.lists(st.integers(0, 5), min_size=2, max_size=30))
def test_auroc_matches_pair_counting(data, scores):
    labels = data.draw(st.lists(st.integers(0, 1), min_size=len(scores), max_size=len(scores)))
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    got = auroc(scores, labels)
    if not pos or not neg:
        assert math.isnan(got)
        return
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    assert got == pytest.approx(wins / (len(pos) * len(neg)))


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 500), data=st.data())
def test_wilson_contains_point_estimate(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@settings(max_examples=40, deadline=None)
@given(
    usage=st.lists(st.floats(0, 10), min_size=1, max_size=8),
    data=st.data(),
)
def test_apgr_of_flat_curve_and_cpt_monotone(usage, data):
    n = len(usage)
    success = data.draw(st.lists(st.floats(0.2, 0.8), min_size=n, max_size=n))
    # a policy recovering the whole gap everywhere (and at u=0) has APGR 1
    assert apgr([0.0] + usage, [0.8] * (n + 1), 0.2, 0.8, 5.0) == pytest.approx(1.0)
    a = apgr(usage, success, 0.2, 0.8, 5.0)
    assert -1e-9 <= a <= 1 + 1e-9
    costs = [cpt(usage, success, 0.2, 0.8, p) for p in CPT_LEVELS]
    finite = [c for c in costs if not math.isnan(c)]
    assert finite == sorted(finite)
