"""The typed helper: encoding, clipping per type, affordability, artifact round trip."""

from __future__ import annotations

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError
from helpseek_core.helper import HELPER_FILE, FeatureStats
from helpseek_core.mlp import MLP
from helpseek_core.typed_helper import (
    InterventionType,
    TypedHelper,
    encode_typed_inputs,
    types_from_manifest,
)

TYPES = (
    InterventionType("hint", k=1, cost=1, cmax=3),
    InterventionType("takeover", k=3, cost=2, cmax=2),
)


def stats(dim: int = 2) -> FeatureStats:
    return FeatureStats.fit(np.array([[0.0] * dim, [2.0] * dim]))


def linear_helper(weights: np.ndarray) -> TypedHelper:
    """One linear layer (in, 3): logits = x @ weights."""
    w = np.asarray(weights, np.float32)
    return TypedHelper(MLP((w,), (np.zeros(w.shape[1], np.float32),)), stats(), TYPES, horizon=10)


def test_encoding_layout_and_clipping_per_type():
    x = encode_typed_inputs(stats(), [[0.0, 2.0], [1.0, 1.0]], [[5, 1], [0, 2]], [10, 5], TYPES, 10)
    assert x.shape == (2, 2 + 2 * 2 + 1)
    np.testing.assert_allclose(x[:, :2], [[-1, 1], [0, 0]])
    # hint: min(5, 3)/3 = 1 (clipped), 1[5 >= 1]; takeover: 1/2, 1[1 >= 2] = 0
    np.testing.assert_allclose(x[0, 2:], [1.0, 1.0, 0.5, 0.0, 1.0])
    np.testing.assert_allclose(x[1, 2:], [0.0, 0.0, 1.0, 1.0, 0.5])
    with pytest.raises(ShapeError, match=r"remaining must be \(B, 2\)"):
        encode_typed_inputs(stats(), [[0.0, 0.0]], [[1]], [3], TYPES, 10)
    with pytest.raises(BudgetError, match="every budget must be a finite number >= 0"):
        encode_typed_inputs(stats(), [[0.0, 0.0]], [[1, np.nan]], [3], TYPES, 10)


def test_decide_never_picks_an_unaffordable_type():
    w = np.zeros((7, 3), np.float32)
    w[6] = [0.0, 1.0, 5.0]  # steps_left/H column: takeover preferred, then hint, then proceed
    h = linear_helper(w)
    assert h.decide([1.0, 1.0], [3, 2], 10).action == 2
    d = h.decide([1.0, 1.0], [3, 1], 10)  # takeover costs 2: not affordable
    assert d.action == 1 and d.probabilities[2] == 0.0 and d.intervene
    d = h.decide([1.0, 1.0], [0, 1], 10)
    assert d.action == 0 and not d.intervene and d.probabilities == (1.0, 0.0, 0.0)
    # above a type's Cmax the answer is the same as at Cmax
    p = h.probabilities(
        np.ones((4, 2)), np.array([[3, 2], [7, 2], [3, 9], [50, 50]]), np.full(4, 6)
    )
    assert np.allclose(p, p[0])


def test_typed_artifact_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    mlp = MLP(
        (rng.normal(size=(7, 8)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)),
        (np.zeros(8, np.float32), np.zeros(3, np.float32)),
    )
    st = stats()
    manifest = {
        "artifact_id": "typed-1",
        "created_at": "2026-12-01T00:00:00Z",
        "kind": "typed",
        "feature_schema": {"names": ["a", "b"], "dim": 2},
        "cmax": 3,
        "horizon": 10,
        "k": 1,
        "cost": 1,
        "types": [t.to_dict() for t in TYPES],
    }
    path = write_artifact(
        tmp_path / "a", manifest, {HELPER_FILE: {**mlp.to_arrays(), **st.to_arrays()}}
    )
    helper = TypedHelper.from_artifact(load_artifact(path))
    assert helper.types == TYPES
    d = helper.decide([0.5, 1.5], [1, 2], 4)
    assert 0 <= d.action <= 2 and abs(sum(d.probabilities) - 1) < 1e-9
    with pytest.raises(
        ArtifactSchemaError, match=r"types\[1\]: type 'b': cost must be an integer >= 1"
    ):
        types_from_manifest({"types": [{"name": "a"}, {"name": "b", "cost": 0}]})
    with pytest.raises(ArtifactSchemaError, match="type names must be distinct"):
        types_from_manifest({"types": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ShapeError, match="MLP has 3 outputs, need 1 \\+ 1 types"):
        TypedHelper(mlp, st, TYPES[:1], 10)
