"""Process reward model (PRM) inference: P(success | state, action), action 0 proceed / 1 intervene.

Two forms, both returning a ``(B, 2)`` array whose column ``a`` is P(episode success | state,
action a) — column 0 proceed, column 1 intervene:

- :class:`TabularPRM` — Monte-Carlo estimates from a :class:`~helpseek_core.types.StepLog`,
  keyed on the exact ``state_key``. Every logged row is one sample: its episode's ``success``
  after taking ``action`` in ``state_key``. The estimates are therefore values *under the
  behaviour policy* of the log (the base agent with random interventions at ``behavior_p``).
- :class:`MLPPRM` — a ReLU MLP over state features, trained in torch by ``training`` and run
  here in numpy (so the service needs no torch).

Tabular shrinkage and fallback (documented choice)::

    global  g    = mean success over all rows
    action  f[a] = (successes with action a + m * g) / (rows with action a + m)
    pair    P(s, a) = (successes at (s, a) + m * f[a]) / (n(s, a) + m)

with ``m = prior_strength``. A key never seen in the log (or a pair with ``n(s, a) = 0``) gets
``f[a]``; with ``m = 0`` a seen pair is exactly its empirical mean and an action never seen at
all falls back to ``g``. No time-bucket level: ``state_key`` is the exact state identity the
tabular model uses, and the step ``t`` is not part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helpseek_core.artifact import Artifact
from helpseek_core.errors import ArtifactSchemaError, InputError, ShapeError
from helpseek_core.helper import FeatureStats
from helpseek_core.mlp import MLP
from helpseek_core.types import StepLog

__all__ = ["MLPPRM", "PRM_FILE", "TabularPRM"]

PRM_FILE = "prm.npz"


@dataclass(frozen=True, eq=False)
class TabularPRM:
    """Shrunk Monte-Carlo success estimates per (state_key, action); see the module docstring."""

    keys: np.ndarray  # (K,) int64, sorted unique: logged state keys
    value: np.ndarray  # (K, 2) float64   shrunk P(success | key, action)
    counts: np.ndarray  # (K, 2) int64   logged rows per (key, action)
    fallback: np.ndarray  # (2,) float64   f[a]: value of a pair never seen
    global_mean: float  # g: mean success over the whole log
    prior_strength: float  # m: pseudo-count of the shrinkage

    def __post_init__(self) -> None:
        keys = np.asarray(self.keys, np.int64)
        k = keys.shape[0]
        if keys.ndim != 1 or (k > 1 and np.any(np.diff(keys) <= 0)):
            raise ShapeError("TabularPRM: keys must be 1-D, sorted and unique")
        for name, shape in (("value", (k, 2)), ("counts", (k, 2)), ("fallback", (2,))):
            if np.shape(getattr(self, name)) != shape:
                raise ShapeError(
                    f"TabularPRM: {name} has shape {np.shape(getattr(self, name))}, expected {shape}"
                )
        object.__setattr__(self, "keys", keys)

    @staticmethod
    def fit(log: StepLog, prior_strength: float = 2.0) -> TabularPRM:
        """Estimate from a step log; ``prior_strength`` m >= 0 is the shrinkage pseudo-count."""
        if not np.isfinite(prior_strength) or prior_strength < 0:
            raise InputError(f"TabularPRM.fit: prior_strength must be >= 0, got {prior_strength}")
        if len(log) == 0:
            raise ShapeError("TabularPRM.fit: the step log is empty")
        m = float(prior_strength)
        y = log.success.astype(np.float64)
        a = log.action.astype(np.int64)
        g = float(y.mean())
        n_a = np.bincount(a, minlength=2).astype(np.float64)
        s_a = np.bincount(a, weights=y, minlength=2)
        denom = n_a + m
        fallback = np.where(denom > 0, (s_a + m * g) / np.where(denom > 0, denom, 1.0), g)
        keys, inv = np.unique(log.state_key, return_inverse=True)
        cell = inv.reshape(-1) * 2 + a
        n = np.bincount(cell, minlength=2 * keys.size).reshape(-1, 2)
        s = np.bincount(cell, weights=y, minlength=2 * keys.size).reshape(-1, 2)
        d = n + m
        value = np.where(d > 0, (s + m * fallback) / np.where(d > 0, d, 1.0), fallback)
        return TabularPRM(keys, value, n.astype(np.int64), fallback, g, m)

    def _lookup(self, state_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(state_keys)
        if q.ndim != 1:
            raise ShapeError(f"TabularPRM: state_keys must be 1-D (B,), got shape {q.shape}")
        q = q.astype(np.int64, copy=False)
        if self.keys.size == 0:
            return np.zeros(q.shape, np.int64), np.zeros(q.shape, bool)
        idx = np.minimum(np.searchsorted(self.keys, q), self.keys.size - 1)
        return idx, self.keys[idx] == q

    def score_keys(self, state_keys: np.ndarray) -> np.ndarray:
        """(B,) int64 state keys -> (B, 2) P(success | key, proceed / intervene); unseen -> fallback."""
        idx, known = self._lookup(state_keys)
        out = np.broadcast_to(self.fallback, (idx.shape[0], 2)).copy()
        out[known] = self.value[idx[known]]
        return out

    def counts_for(self, state_keys: np.ndarray) -> np.ndarray:
        """(B,) int64 state keys -> (B, 2) int64 logged rows per action (0 for unseen keys)."""
        idx, known = self._lookup(state_keys)
        out = np.zeros((idx.shape[0], 2), np.int64)
        out[known] = self.counts[idx[known]]
        return out


@dataclass(frozen=True, eq=False)
class MLPPRM:
    """Feature-based PRM: one MLP logit per (state, action) row.

    Input layout (F + 1 wide), which the torch trainer must reproduce exactly::

        x = [ (features - x_mean) / x_std ,  a ]      a = 0.0 proceed, 1.0 intervene

    i.e. ``FeatureStats.normalise(features)`` followed by the action as one float column;
    the output is the logit of P(success | state, a). Export: ``{W0, b0, W1, b1, ...}`` with
    ``W_i`` of shape (in, out) (the transpose of ``torch.nn.Linear.weight``), ReLU between
    layers, one output, plus ``x_mean, x_std, x_low, x_high, novelty_threshold`` from
    :class:`FeatureStats`, all in ``prm.npz`` (``PRM_FILE``) of the artifact.
    """

    mlp: MLP
    stats: FeatureStats

    def __post_init__(self) -> None:
        f = int(self.stats.mean.shape[0])
        if self.mlp.in_dim != f + 1:
            raise ShapeError(f"MLPPRM: MLP input {self.mlp.in_dim} != feature dim {f} + 1")
        if self.mlp.outputs != 1:
            raise ShapeError(f"MLPPRM: the last layer must have one output, has {self.mlp.outputs}")

    @property
    def feature_dim(self) -> int:
        """Feature length F the PRM expects."""
        return int(self.stats.mean.shape[0])

    def encode(self, features: np.ndarray, action: int) -> np.ndarray:
        """(B, F) features and one action -> (B, F + 1) float32 input rows."""
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.feature_dim:
            raise ShapeError(f"MLPPRM: features must be (B, {self.feature_dim}), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ShapeError("MLPPRM: features contain NaN or inf")
        col = np.full((f.shape[0], 1), float(action), np.float32)
        return np.concatenate([self.stats.normalise(f), col], axis=1)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(B, F) features -> (B, 2) P(success | state, proceed / intervene)."""
        f = np.asarray(features, np.float64)
        if f.ndim == 1:
            f = f.reshape(1, -1)
        x = np.concatenate([self.encode(f, 0), self.encode(f, 1)], axis=0)
        p = self.mlp.probability(x)
        b = f.shape[0]
        return np.stack([p[:b], p[b:]], axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays of ``prm.npz``: the MLP layers and the feature statistics."""
        return {**self.mlp.to_arrays(), **self.stats.to_arrays()}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], where: str = "MLPPRM") -> MLPPRM:
        """Inverse of :meth:`to_arrays`; a bad layout raises ArtifactSchemaError naming ``where``."""
        mlp = MLP.from_arrays(arrays, where)
        stats = FeatureStats.from_arrays(arrays, where)
        try:
            return MLPPRM(mlp, stats)
        except ShapeError as exc:
            raise ArtifactSchemaError(f"{where}: {exc}") from exc

    @staticmethod
    def from_artifact(artifact: Artifact) -> MLPPRM | None:
        """Load the artifact's PRM, or None when it ships no ``prm.npz`` (the file is optional)."""
        if PRM_FILE not in artifact.arrays:
            return None
        where = str(artifact.path / PRM_FILE)
        prm = MLPPRM.from_arrays(artifact.arrays[PRM_FILE], where)
        if prm.feature_dim != artifact.feature_dim:
            raise ArtifactSchemaError(
                f"{where}: PRM expects {prm.feature_dim} features, manifest says "
                f"{artifact.feature_dim}"
            )
        return prm
