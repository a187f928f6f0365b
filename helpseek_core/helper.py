"""Helper inference in numpy: "intervene now?" from (state features, remaining budget, steps left).

The trainer (torch, in ``training``) fits an MLP on the DP labels and exports its layers to
``helper.npz``; this module runs it without torch, so the service needs numpy only.

Input encoding (``encode_inputs``), shared by trainer and server so they can never disagree::

    x = [ (features - mean) / std ,  c / cmax ,  1[c >= cost] ,  steps_left / horizon ]

``c`` is not clipped to ``cmax``, so a helper can be asked about larger budgets than it was
trained on (the generalisation check of the evaluation). The decision is
``intervene = p >= threshold and c >= cost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from helpseek_core.artifact import Artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError

__all__ = [
    "HELPER_FILE",
    "Decision",
    "FeatureStats",
    "Helper",
    "MLP",
    "Reason",
    "decide",
    "encode_inputs",
]

HELPER_FILE = "helper.npz"
Reason = Literal["helper", "budget_exhausted"]


@dataclass(frozen=True, eq=False)
class MLP:
    """A ReLU multilayer perceptron with one output logit per row."""

    weights: tuple[np.ndarray, ...]  # each (in, out) float32
    biases: tuple[np.ndarray, ...]  # each (out,) float32

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ShapeError("MLP: need as many weight matrices as bias vectors (>= 1)")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ShapeError(f"MLP: layer {i} has W {w.shape} and b {b.shape}")
            if i and w.shape[0] != self.weights[i - 1].shape[1]:
                raise ShapeError(f"MLP: layer {i} input {w.shape[0]} != previous output")
        if self.weights[-1].shape[1] != 1:
            raise ShapeError("MLP: the last layer must have one output (a logit)")

    @property
    def in_dim(self) -> int:
        """Input width."""
        return int(self.weights[0].shape[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, in) -> (B,) logits."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h[:, 0]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(B, in) -> (B,) sigmoid of the logits."""
        z = self.logits(x).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flatten to ``{W0, b0, W1, b1, ...}`` for an ``.npz`` file."""
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"W{i}"], out[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], where: str = "MLP") -> MLP:
        """Inverse of :meth:`to_arrays`."""
        n = sum(1 for k in arrays if k.startswith("W") and k[1:].isdigit())
        try:
            ws = tuple(np.asarray(arrays[f"W{i}"], np.float32) for i in range(n))
            bs = tuple(np.asarray(arrays[f"b{i}"], np.float32) for i in range(n))
        except KeyError as exc:
            raise ArtifactSchemaError(f"{where}: missing layer array {exc}") from exc
        try:
            return MLP(ws, bs)
        except ShapeError as exc:
            raise ArtifactSchemaError(f"{where}: {exc}") from exc


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Training-data feature statistics: input normalisation and the novelty score.

    The novelty score of a vector is the root-mean-square of its z-scores; a state is
    *novel* when the score exceeds ``threshold`` (the trainer sets it at a high quantile
    of the training scores) or any feature leaves the training range by more than its std.
    """

    mean: np.ndarray  # (F,) float
    std: np.ndarray  # (F,) float, > 0
    low: np.ndarray  # (F,) float   training minimum
    high: np.ndarray  # (F,) float   training maximum
    threshold: float  # novelty score above which a state is novel

    @staticmethod
    def fit(features: np.ndarray, quantile: float = 0.995) -> FeatureStats:
        """Statistics of a (N, F) training matrix; threshold at ``quantile`` of its scores."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ShapeError(f"FeatureStats.fit: need a non-empty (N, F) matrix, got {x.shape}")
        mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        stats = FeatureStats(mean, std, x.min(axis=0), x.max(axis=0), threshold=np.inf)
        scores = stats.score(x)
        return FeatureStats(mean, std, stats.low, stats.high, float(np.quantile(scores, quantile)))

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> z-scores (B, F) float32."""
        return ((np.asarray(features, np.float64) - self.mean) / self.std).astype(np.float32)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> (B,) RMS z-score."""
        z = (np.asarray(features, np.float64) - self.mean) / self.std
        return np.sqrt(np.mean(z * z, axis=1)) if z.shape[1] else np.zeros(z.shape[0])

    def is_novel(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> (B,) bool: unlike the training data."""
        x = np.asarray(features, np.float64)
        outside = ((x < self.low - self.std) | (x > self.high + self.std)).any(axis=1)
        return outside | (self.score(x) > self.threshold)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """For ``helper.npz``."""
        return {
            "x_mean": self.mean,
            "x_std": self.std,
            "x_low": self.low,
            "x_high": self.high,
            "novelty_threshold": np.asarray(self.threshold),
        }

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], where: str = "FeatureStats") -> FeatureStats:
        """Inverse of :meth:`to_arrays`."""
        try:
            return FeatureStats(
                np.asarray(arrays["x_mean"], np.float64),
                np.asarray(arrays["x_std"], np.float64),
                np.asarray(arrays["x_low"], np.float64),
                np.asarray(arrays["x_high"], np.float64),
                float(arrays["novelty_threshold"]),
            )
        except KeyError as exc:
            raise ArtifactSchemaError(f"{where}: missing feature statistic {exc}") from exc


def encode_inputs(
    stats: FeatureStats,
    features: np.ndarray,
    remaining: np.ndarray,
    steps_left: np.ndarray,
    cmax: int,
    horizon: int,
    cost: int,
) -> np.ndarray:
    """Build the helper's input rows (see the module docstring). Shapes: (B, F), (B,), (B,)."""
    f = np.atleast_2d(np.asarray(features, np.float64))
    c = np.asarray(remaining, np.float64).reshape(-1)
    left = np.asarray(steps_left, np.float64).reshape(-1)
    if f.shape[1] != stats.mean.shape[0]:
        raise ShapeError(f"features: expected length {stats.mean.shape[0]}, got {f.shape[1]}")
    if not (f.shape[0] == c.shape[0] == left.shape[0]):
        raise ShapeError("features, remaining and steps_left must have the same batch size")
    if np.any(c < 0):
        raise BudgetError("remaining: budget must be >= 0")
    extra = np.stack([c / max(cmax, 1), (c >= cost).astype(np.float64), left / horizon], axis=1)
    return np.concatenate([stats.normalise(f), extra.astype(np.float32)], axis=1)


@dataclass(frozen=True)
class Decision:
    """The answer for one state."""

    intervene: bool
    probability: float  # helper's P(intervening is optimal)
    reason: Reason
    novel: bool
    novelty_score: float


def decide(probability: float, threshold: float, remaining: int, cost: int) -> tuple[bool, Reason]:
    """Intervene only if the helper says so *and* the remaining budget covers the cost."""
    if remaining < cost:
        return False, "budget_exhausted"
    return bool(probability >= threshold), "helper"


@dataclass(frozen=True, eq=False)
class Helper:
    """A loaded helper: MLP + feature statistics + the constants of its artifact."""

    mlp: MLP
    stats: FeatureStats
    cmax: int
    horizon: int
    cost: int
    threshold: float = 0.5

    @staticmethod
    def from_artifact(artifact: Artifact) -> Helper:
        """Build from a verified ``features`` artifact (reads ``helper.npz``)."""
        where = str(artifact.path / HELPER_FILE)
        if HELPER_FILE not in artifact.arrays:
            raise ArtifactSchemaError(f"{where}: the artifact has no helper weights")
        arrays = artifact.arrays[HELPER_FILE]
        mlp = MLP.from_arrays(arrays, where)
        stats = FeatureStats.from_arrays(arrays, where)
        m = artifact.manifest
        if stats.mean.shape[0] != artifact.feature_dim:
            raise ArtifactSchemaError(
                f"{where}: statistics have {stats.mean.shape[0]} features, manifest says "
                f"{artifact.feature_dim}"
            )
        if mlp.in_dim != artifact.feature_dim + 3:
            raise ArtifactSchemaError(
                f"{where}: MLP input {mlp.in_dim} != feature dim {artifact.feature_dim} + 3"
            )
        threshold = float(m.get("helper", {}).get("threshold", 0.5))
        return Helper(mlp, stats, int(m["cmax"]), int(m["horizon"]), int(m["cost"]), threshold)

    def probability(
        self, features: np.ndarray, remaining: np.ndarray, steps_left: np.ndarray
    ) -> np.ndarray:
        """Batch: (B, F), (B,), (B,) -> (B,) P(intervene is optimal)."""
        x = encode_inputs(
            self.stats, features, remaining, steps_left, self.cmax, self.horizon, self.cost
        )
        return self.mlp.probability(x)

    def decide(self, features: np.ndarray, remaining: int, steps_left: int) -> Decision:
        """One state -> Decision (intervene only if the budget covers the cost)."""
        f = np.asarray(features, np.float64).reshape(1, -1)
        p = float(self.probability(f, np.array([remaining]), np.array([steps_left]))[0])
        intervene, reason = decide(p, self.threshold, remaining, self.cost)
        return Decision(
            intervene=intervene,
            probability=p,
            reason=reason,
            novel=bool(self.stats.is_novel(f)[0]),
            novelty_score=float(self.stats.score(f)[0]),
        )
