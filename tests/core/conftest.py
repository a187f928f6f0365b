"""Shared builders for the core tests: small random MDPs as TabularModels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from helpseek_core.types import TabularModel


def random_tabular_model(
    seed: int,
    n_states: int,
    horizon: int,
    k: int = 1,
    cost: int = 1,
    leaf_p: float = 0.0,
    density: float = 0.6,
    tie_p: float = 0.0,
) -> TabularModel:
    """A random sparse-ish MDP: each (s, a) row spreads over S states + 2 terminals.

    With probability ``tie_p`` a state's intervene row copies its proceed row (exact ties).
    """
    rng = np.random.default_rng(seed)
    w = rng.random((2, n_states, n_states + 2)) * (
        rng.random((2, n_states, n_states + 2)) < density
    )
    empty = w.sum(axis=2) == 0
    for a, s in np.argwhere(empty):
        w[a, s, rng.integers(n_states + 2)] = 1.0
    same = rng.random(n_states) < tie_p
    w[1, same] = w[0, same]
    w /= w.sum(axis=2, keepdims=True)
    leaf_mask = rng.random((n_states, 2)) < leaf_p
    return TabularModel(
        state_keys=np.sort(rng.choice(10_000, n_states, replace=False)).astype(np.int64),
        trans=(sp.csr_matrix(w[0, :, :n_states]), sp.csr_matrix(w[1, :, :n_states])),
        succ=w[:, :, n_states],
        fail=w[:, :, n_states + 1],
        start=rng.dirichlet(np.ones(n_states)),
        horizon=horizon,
        k=k,
        cost=cost,
        leaf_mask=leaf_mask,
        leaf_value=np.where(leaf_mask, rng.random((n_states, 2)), 0.0),
    )


@pytest.fixture(scope="session")
def make_model() -> Callable[..., TabularModel]:
    """The random small-MDP builder (see random_tabular_model)."""
    return random_tabular_model
