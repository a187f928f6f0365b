"""Helper inference in numpy: "intervene now?" from (state features, remaining budget, steps left).

The trainer (torch, in ``training``) fits an MLP on the DP labels and exports its layers to
``helper.npz``; this module runs it without torch, so the service needs numpy only.

Input encoding (``encode_inputs``), shared by trainer, evaluator and server so they can never
disagree::

    x = [ clip((features - mean) / std, ±Z_MAX) ,  min(c, cmax) / cmax ,  1[c >= cost] ,
          steps_left / horizon ]

``c`` **is clipped to ``cmax``**: the helper is trained on budgets ``cost..cmax`` only (the
artifact's ``budget_range``), and a budget above that would be an input it never saw — more
budget could then mean worse decisions. A helper asked at ``c > cmax`` answers as at ``cmax``
(:attr:`Scored.budget_clipped` says so; the service reports it as ``budget_clipped``). The
z-scores are clipped to ``±Z_MAX`` so a huge (finite) feature yields a finite probability and
novelty score (such a state is always *novel*). The decision is
``intervene = p >= threshold and c >= cost`` (with the true, unclipped ``c``).

:func:`score_states` is the one scoring function (encoding, normalisation, novelty, decide
rule, vectorised over states and budgets); :meth:`Helper.probability`, :meth:`Helper.decide`
and the service's features scorer all call it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from helpseek_core.artifact import Artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError
from helpseek_core.mlp import MLP

__all__ = [
    "HELPER_FILE",
    "Decision",
    "FeatureStats",
    "Helper",
    "Reason",
    "Scored",
    "Z_MAX",
    "decide",
    "encode_inputs",
    "score_states",
]

HELPER_FILE = "helper.npz"
Reason = Literal["helper", "budget_exhausted"]
Z_MAX = 1e6  # |z-score| cap: keeps float32 inputs and the novelty score finite


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

    def zscores(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> z-scores (B, F) float64, clipped to ``±Z_MAX``."""
        z = (np.asarray(features, np.float64) - self.mean) / self.std
        np.minimum(z, Z_MAX, out=z)  # np.clip's Python wrapper costs more than the work here
        return np.maximum(z, -Z_MAX, out=z)

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> z-scores (B, F) float32 (clipped to ``±Z_MAX``)."""
        return self.zscores(features).astype(np.float32)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> (B,) RMS of the (clipped) z-scores."""
        return self._rms(self.zscores(features))

    @staticmethod
    def _rms(z: np.ndarray) -> np.ndarray:
        if not z.shape[1]:
            return np.zeros(z.shape[0])
        return np.sqrt(np.einsum("ij,ij->i", z, z) / z.shape[1])

    def is_novel(self, features: np.ndarray) -> np.ndarray:
        """(B, F) -> (B,) bool: unlike the training data."""
        x = np.asarray(features, np.float64)
        return self._novel(x, self.score(x))

    def _novel(self, x: np.ndarray, score: np.ndarray) -> np.ndarray:
        low, high = self._bounds
        outside = ((x < low) | (x > high)).any(axis=1)
        return outside | (score > self.threshold)

    @functools.cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Training range widened by one std on each side (outside it: novel)."""
        return self.low - self.std, self.high + self.std

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


def _check_batch(
    stats: FeatureStats,
    features: np.ndarray,
    remaining: np.ndarray,
    steps_left: np.ndarray | int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, F) float64, (B or 1, n) float64 budgets, (B or 1,) float64 steps left; or raise."""
    f = np.asarray(features, np.float64)
    if f.ndim == 1:
        f = f.reshape(1, -1)
    c = np.asarray(remaining, np.float64)
    if c.ndim == 1:
        c = c.reshape(1, -1)
    left = np.asarray(steps_left, np.float64).reshape(-1)
    if f.shape[1] != stats.mean.shape[0]:
        raise ShapeError(f"features: expected length {stats.mean.shape[0]}, got {f.shape[1]}")
    if c.shape[0] not in (1, f.shape[0]) or left.shape[0] not in (1, f.shape[0]):
        raise ShapeError("features, remaining and steps_left must have the same batch size")
    if c.size and c.min() < 0:
        raise BudgetError("remaining: budget must be >= 0")
    return f, c, left


def _encode(
    z: np.ndarray, c: np.ndarray, left: np.ndarray, cmax: int, horizon: int, cost: int
) -> np.ndarray:
    """(B, F) z-scores, (B or 1, n) budgets, (B or 1,) steps left -> (B, n, F + 3) float32."""
    rows, dim = z.shape
    x = np.empty((rows, c.shape[1], dim + 3), np.float32)
    x[:, :, :dim] = z[:, None, :]
    x[:, :, dim] = np.minimum(c, cmax) / max(cmax, 1)
    x[:, :, dim + 1] = c >= cost
    x[:, :, dim + 2] = (left / horizon)[:, None]
    return x


def encode_inputs(
    stats: FeatureStats,
    features: np.ndarray,
    remaining: np.ndarray,
    steps_left: np.ndarray,
    cmax: int,
    horizon: int,
    cost: int,
) -> np.ndarray:
    """Build the helper's input rows (see the module docstring). Shapes: (B, F), (B,), (B,).

    ``remaining`` above ``cmax`` is encoded as ``cmax`` (the trained budget range).
    """
    c = np.asarray(remaining, np.float64).reshape(-1, 1)
    f, c, left = _check_batch(stats, features, c, steps_left)
    if not (f.shape[0] == c.shape[0] == left.shape[0]):
        raise ShapeError("features, remaining and steps_left must have the same batch size")
    return _encode(stats.zscores(f), c, left, cmax, horizon, cost)[:, 0, :]


@dataclass(frozen=True, eq=False)
class Scored:
    """One state scored at remaining budgets ``budgets`` (what the service answers from).

    From :func:`score_states` with a batch of states every field gains a leading (B,) axis:
    ``budgets`` … ``budget_clipped`` are (B, n) and ``novel``/``novelty_score`` (B,) arrays.
    """

    budgets: np.ndarray  # (n,) int   remaining budgets asked about
    probability: np.ndarray  # (n,) float   P(intervening is optimal)
    asks: np.ndarray  # (n,) bool   probability >= threshold
    intervene: np.ndarray  # (n,) bool   asks and the budget covers the cost (``decide``)
    budget_clipped: np.ndarray  # (n,) bool   budget above cmax, scored as cmax
    novel: bool
    novelty_score: float

    def at(self, remaining: int) -> int:
        """Row index of ``remaining`` in a window of consecutive budgets (caller ensures it)."""
        return int(remaining - int(self.budgets[0]))


def score_states(
    mlp: MLP,
    stats: FeatureStats,
    features: np.ndarray,
    budgets: np.ndarray,
    steps_left: np.ndarray | int,
    *,
    cmax: int,
    horizon: int,
    cost: int,
    threshold: float,
) -> Scored:
    """Score states at remaining budgets: the one helper scoring function.

    ``features`` (F,) with ``budgets`` (n,) and a scalar ``steps_left`` gives one state's
    :class:`Scored`; ``features`` (B, F) with ``budgets`` (B, n) (or (n,), shared) and
    ``steps_left`` (B,) gives the batch form. One forward pass over all B * n rows; the
    state's z-scores are computed once for the inputs and the novelty score.
    """
    single = np.ndim(features) == 1
    f, c, left = _check_batch(stats, features, budgets, steps_left)
    z = stats.zscores(f)
    x = _encode(z, c, left, cmax, horizon, cost)
    rows, n = x.shape[0], x.shape[1]
    # MLP.probability without np.clip's Python wrapper (same numbers: clip = max then min)
    logit = mlp.logits(x.reshape(rows * n, x.shape[2])).astype(np.float64)
    np.maximum(logit, -60.0, out=logit)
    np.minimum(logit, 60.0, out=logit)
    np.negative(logit, out=logit)
    np.exp(logit, out=logit)
    logit += 1.0
    p = np.divide(1.0, logit, out=logit).reshape(rows, n)
    if c.shape[0] != rows:
        c = np.broadcast_to(c, (rows, n))
    asks = p >= threshold
    intervene = asks & (c >= cost)  # ``decide``, vectorised
    clipped = c > cmax
    score = FeatureStats._rms(z)
    novel = stats._novel(f, score)
    ci = c.astype(np.int64)
    if single:
        return Scored(
            ci[0], p[0], asks[0], intervene[0], clipped[0], bool(novel[0]), float(score[0])
        )
    return Scored(ci, p, asks, intervene, clipped, novel, score)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """The answer for one state."""

    intervene: bool
    probability: float  # helper's P(intervening is optimal)
    reason: Reason
    novel: bool
    novelty_score: float
    budget_clipped: bool = False  # remaining > cmax: answered as at cmax


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
        if mlp.outputs != 1:
            raise ArtifactSchemaError(
                f"{where}: the helper MLP must have one output, has {mlp.outputs}"
            )
        threshold = float(m.get("helper", {}).get("threshold", 0.5))
        return Helper(mlp, stats, int(m["cmax"]), int(m["horizon"]), int(m["cost"]), threshold)

    @property
    def budget_range(self) -> tuple[int, int]:
        """Remaining budgets the helper was trained on (``cost..cmax``); above: clipped."""
        return (self.cost, self.cmax)

    def score(
        self, features: np.ndarray, budgets: np.ndarray, steps_left: np.ndarray | int
    ) -> Scored:
        """:func:`score_states` with this helper's constants."""
        return score_states(
            self.mlp,
            self.stats,
            features,
            budgets,
            steps_left,
            cmax=self.cmax,
            horizon=self.horizon,
            cost=self.cost,
            threshold=self.threshold,
        )

    def probability(
        self, features: np.ndarray, remaining: np.ndarray, steps_left: np.ndarray
    ) -> np.ndarray:
        """Batch: (B, F), (B,), (B,) -> (B,) P(intervene is optimal)."""
        f = np.atleast_2d(np.asarray(features, np.float64))
        c = np.asarray(remaining).reshape(-1, 1)
        left = np.asarray(steps_left).reshape(-1)
        if not (f.shape[0] == c.shape[0] == left.shape[0]):
            raise ShapeError("features, remaining and steps_left must have the same batch size")
        return np.asarray(self.score(f, c, left).probability)[:, 0]

    def decide(self, features: np.ndarray, remaining: int, steps_left: int) -> Decision:
        """One state -> Decision (intervene only if the budget covers the cost)."""
        s = self.score(
            np.asarray(features, np.float64).reshape(-1), np.array([remaining]), steps_left
        )
        return Decision(
            intervene=bool(s.intervene[0]),
            probability=float(s.probability[0]),
            reason="helper" if remaining >= self.cost else "budget_exhausted",
            novel=s.novel,
            novelty_score=s.novelty_score,
            budget_clipped=bool(s.budget_clipped[0]),
        )
