import numpy as np
import pytest

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.errors import ArtifactSchemaError, InputError, ShapeError
from helpseek_core.helper import FeatureStats
from helpseek_core.mlp import MLP
from helpseek_core.prm import MLPPRM, PRM_FILE, TabularPRM
from helpseek_core.types import StepLog


def make_log(keys, actions, success, episode=None, features=None):
    n = len(keys)
    return StepLog(
        episode_id=np.arange(n) if episode is None else episode,
        task_id=np.zeros(n),
        t=np.zeros(n),
        state_key=np.asarray(keys),
        features=np.zeros((n, 2)) if features is None else features,
        action=np.asarray(actions),
        intervention_type=np.zeros(n),
        cost=np.asarray(actions),
        duration=np.ones(n),
        next_state_key=np.zeros(n),
        done=np.ones(n, bool),
        truncated=np.zeros(n, bool),
        success=np.asarray(success, bool),
        behavior_p=np.full(n, 0.2),
    )


KEYS = [7, 7, 7, 7, 3, 3, 9, 7]
ACTS = [0, 0, 0, 1, 0, 1, 1, 1]
SUCC = [1, 0, 0, 1, 1, 0, 1, 1]


def test_tabular_prior_zero_equals_hand_counts():
    prm = TabularPRM.fit(make_log(KEYS, ACTS, SUCC), prior_strength=0.0)
    got = prm.score_keys(np.array([7, 3, 9]))
    # key 7: proceed 1/3, intervene 2/2; key 3: 1/1, 0/1; key 9: proceed unseen, intervene 1/1
    f0 = 2 / 4  # action-0 mean: successes 1,0,0,1 over 4 proceed rows
    np.testing.assert_allclose(got, [[1 / 3, 1.0], [1.0, 0.0], [f0, 1.0]])
    np.testing.assert_array_equal(
        prm.counts_for(np.array([7, 3, 9, 42])), [[3, 2], [1, 1], [0, 1], [0, 0]]
    )
    assert prm.global_mean == pytest.approx(5 / 8)


def test_tabular_shrinkage_and_unseen_fallback():
    m = 2.0
    prm = TabularPRM.fit(make_log(KEYS, ACTS, SUCC), prior_strength=m)
    g = 5 / 8
    f = [(2 + m * g) / (4 + m), (3 + m * g) / (4 + m)]  # action means shrunk to g
    np.testing.assert_allclose(prm.fallback, f)
    np.testing.assert_allclose(
        prm.score_keys(np.array([7]))[0], [(1 + m * f[0]) / (3 + m), (2 + m * f[1]) / (2 + m)]
    )
    unseen = prm.score_keys(np.array([-5, 10**12, 4]))
    np.testing.assert_allclose(unseen, np.tile(f, (3, 1)))
    assert prm.score_keys(np.array([], np.int64)).shape == (0, 2)


def test_tabular_action_never_logged_falls_back_to_global_mean():
    prm = TabularPRM.fit(make_log([1, 2, 2], [0, 0, 0], [1, 0, 1]), prior_strength=0.0)
    np.testing.assert_allclose(prm.score_keys(np.array([2]))[0], [0.5, 2 / 3])


def test_tabular_bad_input():
    with pytest.raises(InputError, match="prior_strength"):
        TabularPRM.fit(make_log(KEYS, ACTS, SUCC), prior_strength=-1)
    prm = TabularPRM.fit(make_log(KEYS, ACTS, SUCC))
    with pytest.raises(ShapeError, match="1-D"):
        prm.score_keys(np.zeros((2, 2), np.int64))


def random_prm(rng, f=3, hidden=8):
    x = rng.normal(size=(50, f))
    stats = FeatureStats.fit(x)
    mlp = MLP(
        (
            rng.normal(size=(f + 1, hidden)).astype(np.float32),
            rng.normal(size=(hidden, 1)).astype(np.float32),
        ),
        (rng.normal(size=hidden).astype(np.float32), rng.normal(size=1).astype(np.float32)),
    )
    return MLPPRM(mlp, stats), x


def test_mlp_prm_layout_matches_manual_forward():
    rng = np.random.default_rng(0)
    prm, x = random_prm(rng)
    out = prm.score(x[:5])
    assert out.shape == (5, 2)
    w0, w1 = prm.mlp.weights
    b0, b1 = prm.mlp.biases
    for a in (0, 1):
        z = np.concatenate([(x[:5] - prm.stats.mean) / prm.stats.std, np.full((5, 1), a)], axis=1)
        logit = np.maximum(z @ w0 + b0, 0) @ w1 + b1
        np.testing.assert_allclose(out[:, a], 1 / (1 + np.exp(-logit[:, 0])), rtol=1e-5)
    assert not np.allclose(out[:, 0], out[:, 1])  # the action column matters
    with pytest.raises(ShapeError, match="features must be"):
        prm.score(np.zeros((2, 4)))


def manifest(dim):
    return {
        "artifact_id": "prm-test",
        "created_at": "2026-11-01T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 3,
        "horizon": 10,
        "k": 1,
        "cost": 1,
    }


def test_mlp_prm_round_trip_through_artifact(tmp_path):
    rng = np.random.default_rng(1)
    prm, x = random_prm(rng)
    write_artifact(tmp_path / "a", manifest(3), {PRM_FILE: prm.to_arrays()})
    loaded = MLPPRM.from_artifact(load_artifact(tmp_path / "a", expected_feature_dim=3))
    assert loaded is not None
    np.testing.assert_array_equal(loaded.score(x), prm.score(x))
    assert set(prm.to_arrays()) == {
        "W0",
        "b0",
        "W1",
        "b1",
        "x_mean",
        "x_std",
        "x_low",
        "x_high",
        "novelty_threshold",
    }


def test_mlp_prm_optional_and_dim_checked(tmp_path):
    rng = np.random.default_rng(2)
    prm, _ = random_prm(rng)
    write_artifact(tmp_path / "none", manifest(3), {"other.npz": {"a": np.zeros(1)}})
    assert MLPPRM.from_artifact(load_artifact(tmp_path / "none")) is None
    write_artifact(tmp_path / "bad", manifest(4), {PRM_FILE: prm.to_arrays()})
    with pytest.raises(
        ArtifactSchemaError, match="prm.npz: PRM expects 3 features, manifest says 4"
    ):
        MLPPRM.from_artifact(load_artifact(tmp_path / "bad"))
    arrays = prm.to_arrays()
    del arrays["W1"]
    with pytest.raises(ArtifactSchemaError, match="where-x"):
        MLPPRM.from_arrays(arrays, "where-x")
