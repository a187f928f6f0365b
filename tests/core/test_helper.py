import numpy as np
import pytest

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError
from helpseek_core.helper import (
    HELPER_FILE,
    Z_MAX,
    FeatureStats,
    Helper,
    decide,
    encode_inputs,
    score_states,
)
from helpseek_core.mlp import MLP


def random_mlp(rng, in_dim, hidden=(8, 4)):
    dims = (in_dim, *hidden, 1)
    ws = tuple(
        rng.normal(size=(a, b)).astype(np.float32) for a, b in zip(dims[:-1], dims[1:], strict=True)
    )
    bs = tuple(rng.normal(size=b).astype(np.float32) for b in dims[1:])
    return MLP(ws, bs)


def test_encode_inputs_layout():
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    stats = FeatureStats.fit(x)  # mean (2, 4), std (1, 2)
    enc = encode_inputs(stats, x, np.array([0, 3]), np.array([10, 5]), cmax=2, horizon=20, cost=1)
    assert enc.shape == (2, 5) and enc.dtype == np.float32
    np.testing.assert_allclose(enc[:, :2], [[-1, -1], [1, 1]])
    np.testing.assert_allclose(enc[:, 2], [0, 1.0])  # min(c, cmax) / cmax: 3 is clipped to 2
    np.testing.assert_allclose(enc[:, 3], [0, 1])  # 1[c >= cost]
    np.testing.assert_allclose(enc[:, 4], [0.5, 0.25])  # steps_left / horizon
    with pytest.raises(ShapeError, match="expected length 2, got 3"):
        encode_inputs(stats, np.zeros((1, 3)), np.array([1]), np.array([1]), 2, 20, 1)
    with pytest.raises(ShapeError, match="same batch size"):
        encode_inputs(stats, x, np.array([1]), np.array([1, 2]), 2, 20, 1)
    with pytest.raises(BudgetError, match="budget must be >= 0"):
        encode_inputs(stats, x, np.array([-1, 0]), np.array([1, 2]), 2, 20, 1)


def test_decide_refuses_without_budget():
    assert decide(0.99, 0.5, remaining=0, cost=1) == (False, "budget_exhausted")
    assert decide(0.99, 0.5, remaining=1, cost=2) == (False, "budget_exhausted")
    assert decide(0.99, 0.5, remaining=2, cost=2) == (True, "helper")
    assert decide(0.2, 0.5, remaining=2, cost=1) == (False, "helper")


def test_feature_stats_novelty():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4))
    stats = FeatureStats.fit(train, quantile=1.0)
    assert not stats.is_novel(train).any()  # threshold at the max score, inside the range
    far = train[:3] + np.array([50.0, 0, 0, 0])
    assert stats.is_novel(far).all()
    assert (stats.score(far) > stats.score(train[:3])).all()
    stats995 = FeatureStats.fit(train)
    assert stats995.is_novel(train).mean() <= 0.01
    with pytest.raises(ShapeError, match="non-empty"):
        FeatureStats.fit(np.zeros((0, 4)))


def test_mlp_round_trip_and_shape_checks():
    rng = np.random.default_rng(1)
    mlp = random_mlp(rng, 5)
    again = MLP.from_arrays(mlp.to_arrays())
    x = rng.normal(size=(7, 5))
    np.testing.assert_array_equal(again.logits(x), mlp.logits(x))
    p = mlp.probability(x)
    assert p.shape == (7,) and np.all((p > 0) & (p < 1))
    two = MLP((np.ones((3, 2), np.float32),), (np.array([0.0, 1.0], np.float32),))
    assert two.outputs == 2 and two.forward(np.ones((4, 3))).tolist() == [[3.0, 4.0]] * 4
    with pytest.raises(ShapeError, match="this MLP has 2 outputs, use forward"):
        two.logits(np.ones((1, 3)))
    with pytest.raises(ArtifactSchemaError, match="missing layer array"):
        MLP.from_arrays({"W0": np.zeros((3, 1)), "W1": np.zeros((1, 1)), "b0": np.zeros(1)})


def test_helper_from_artifact_and_decide(tmp_path):
    rng = np.random.default_rng(2)
    f = 3
    train = rng.normal(size=(100, f))
    stats = FeatureStats.fit(train)
    mlp = random_mlp(rng, f + 3)
    m = {
        "artifact_id": "h1",
        "created_at": "2026-11-01T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": ["a", "b", "c"], "dim": f},
        "cmax": 3,
        "horizon": 10,
        "k": 1,
        "cost": 1,
        "helper": {"threshold": 0.0},  # always says "intervene"
    }
    write_artifact(tmp_path / "a", m, {HELPER_FILE: {**mlp.to_arrays(), **stats.to_arrays()}})
    helper = Helper.from_artifact(load_artifact(tmp_path / "a"))
    d = helper.decide(train[0], remaining=1, steps_left=4)
    assert d.intervene and d.reason == "helper" and not d.novel
    d0 = helper.decide(train[0], remaining=0, steps_left=4)
    assert not d0.intervene and d0.reason == "budget_exhausted"
    assert helper.decide(train[0] + 100, remaining=1, steps_left=4).novel
    # independent reference: the layers by hand on the documented input row
    row = np.concatenate([(train[0] - train.mean(0)) / train.std(0), [1 / 3, 1.0, 4 / 10]])
    h = np.maximum(row @ mlp.weights[0] + mlp.biases[0], 0)
    h = np.maximum(h @ mlp.weights[1] + mlp.biases[1], 0)
    logit = float((h @ mlp.weights[2] + mlp.biases[2])[0])
    assert d.probability == pytest.approx(1 / (1 + np.exp(-logit)), rel=1e-5)
    write_artifact(
        tmp_path / "b",
        {**m, "feature_schema": {"names": ["a"], "dim": 1}},
        {HELPER_FILE: {**mlp.to_arrays(), **stats.to_arrays()}},
    )
    with pytest.raises(ArtifactSchemaError, match="statistics have 3 features, manifest says 1"):
        Helper.from_artifact(load_artifact(tmp_path / "b"))


def _helper(rng, f=3, cmax=3, horizon=10, cost=1, threshold=0.5):
    train = rng.normal(size=(200, f))
    return Helper(
        random_mlp(rng, f + 3), FeatureStats.fit(train), cmax, horizon, cost, threshold
    ), train


def test_score_states_batch_equals_one_state_at_a_time():
    """The vectorised form (B states x n budgets) answers each (state, budget) like decide()."""
    rng = np.random.default_rng(3)
    helper, train = _helper(rng)
    feats, budgets, left = train[:5], np.array([[0, 1, 2, 3, 4, 5]] * 5), np.array([9, 7, 5, 3, 1])
    batch = helper.score(feats, budgets, left)
    assert batch.probability.shape == (5, 6) and batch.novel.shape == (5,)
    for b in range(5):
        one = helper.score(feats[b], budgets[b], int(left[b]))
        np.testing.assert_array_equal(one.probability, batch.probability[b])
        np.testing.assert_array_equal(one.intervene, batch.intervene[b])
        assert one.novel == bool(batch.novel[b])
        assert one.novelty_score == pytest.approx(float(batch.novelty_score[b]))
        for j, c in enumerate(budgets[b]):
            d = helper.decide(feats[b], int(c), int(left[b]))
            assert d.probability == pytest.approx(float(batch.probability[b, j]), rel=1e-6)
            assert d.intervene == bool(batch.intervene[b, j])
            assert d.intervene == (d.probability >= 0.5 and c >= 1)
            assert d.budget_clipped == (c > 3)
    p = helper.probability(feats, budgets[:, 2], left)
    np.testing.assert_allclose(p, batch.probability[:, 2], rtol=1e-6)


def test_budget_above_cmax_is_clipped_never_worse():
    """Issue 10 item 2: c > cmax is answered as at cmax, so more budget never changes a
    yes into a no; the answer says it was clipped."""
    rng = np.random.default_rng(4)
    helper, train = _helper(rng, cmax=3)
    s = helper.score(train[:50], np.arange(0, 13), np.full(50, 6))
    at_cmax = s.probability[:, 3]
    for c in range(4, 13):  # up to 4 x cmax
        np.testing.assert_array_equal(s.probability[:, c], at_cmax)
        np.testing.assert_array_equal(s.intervene[:, c], s.intervene[:, 3])
    assert not s.budget_clipped[:, :4].any() and s.budget_clipped[:, 4:].all()
    assert helper.budget_range == (1, 3)


def test_huge_finite_features_give_finite_scores():
    """Issue 13 row 3: 1e308 / 3.5e38 features score finitely (z capped at Z_MAX), novel."""
    rng = np.random.default_rng(5)
    helper, _ = _helper(rng)
    for big in (1e308, -1e308, 3.5e38):
        s = helper.score(np.full(3, big), np.array([0, 1, 2]), 5)
        assert np.isfinite(s.probability).all() and np.isfinite(s.novelty_score)
        assert s.novel and s.novelty_score <= Z_MAX
    z = helper.stats.zscores(np.array([[1e308, 0, 0]]))
    assert z[0, 0] == Z_MAX


def test_score_states_refuses_bad_shapes():
    rng = np.random.default_rng(6)
    helper, train = _helper(rng)
    with pytest.raises(ShapeError, match="expected length 3, got 2"):
        helper.score(np.zeros(2), np.array([1]), 1)
    with pytest.raises(BudgetError, match="budget must be >= 0"):
        helper.score(train[0], np.array([-1, 0]), 1)
    with pytest.raises(ShapeError, match="same batch size"):
        score_states(
            helper.mlp,
            helper.stats,
            train[:2],
            np.ones((3, 1)),
            np.ones(2),
            cmax=3,
            horizon=10,
            cost=1,
            threshold=0.5,
        )
