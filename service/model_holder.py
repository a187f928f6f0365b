"""The model the service answers with: a ``Scorer`` behind a holder that hot-swaps it.

``Scorer`` is the seam between HTTP and inference. The ``features`` implementation wraps
:class:`helpseek_core.helper.Helper` (numpy only). A ``text`` artifact is served by
``helpseek_text.load_scorer(artifact) -> Scorer``, imported lazily so the service never
imports torch unless such an artifact is loaded. A scorer whose ``inline`` is False is run in
the thread pool so a slow model never blocks the event loop; a scorer that also has
``async ascore(...)`` (the text scorer: micro-batched in its own worker thread) is awaited
instead, and its ``aclose()`` is called when it is swapped out or the service stops.

One call scores the state at a *range* of remaining budgets (one batched forward pass); the
budget store then picks the entry for the budget the session really holds, atomically.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from starlette.concurrency import run_in_threadpool

from helpseek_core.artifact import Artifact, load_artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError
from helpseek_core.helper import Helper

__all__ = [
    "FeaturesScorer",
    "ModelHolder",
    "Scored",
    "Scorer",
    "load_scorer",
    "target_intervention_rate",
]

_INLINE_MAX_PARAMS = 200_000  # above this a forward pass goes to the thread pool


@dataclass(frozen=True, eq=False)
class Scored:
    """A state scored at remaining budgets ``budgets``."""

    budgets: np.ndarray  # (n,) int   remaining budgets lo..hi
    probability: np.ndarray  # (n,) float   P(intervening is optimal)
    asks: np.ndarray  # (n,) bool   probability >= threshold
    intervene: np.ndarray  # (n,) bool   asks and the budget covers the cost (core ``decide``)
    novel: bool
    novelty_score: float

    def at(self, remaining: int) -> int:
        """Row index of ``remaining`` (caller ensures it was scored)."""
        return int(remaining - int(self.budgets[0]))


@runtime_checkable
class Scorer(Protocol):
    """What the HTTP layer needs from a model (features or text)."""

    model_version: str
    kind: str  # "features" | "text"
    feature_dim: int  # 0 for text
    horizon: int
    cmax: int
    cost: int
    threshold: float
    inline: bool  # cheap enough to run on the event loop
    manifest: Mapping[str, Any]

    def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """Score one state at each remaining budget in ``budgets``; raise InputError if bad."""
        ...


class FeaturesScorer:
    """Numeric-feature artifacts: the core Helper MLP plus feature statistics."""

    kind = "features"

    def __init__(self, artifact: Artifact) -> None:
        self.helper = Helper.from_artifact(artifact)
        self.model_version = artifact.artifact_id
        self.feature_dim = artifact.feature_dim
        self.horizon = self.helper.horizon
        self.cmax = self.helper.cmax
        self.cost = self.helper.cost
        self.threshold = self.helper.threshold
        self.manifest: Mapping[str, Any] = artifact.manifest
        n_params = sum(
            w.size + b.size
            for w, b in zip(self.helper.mlp.weights, self.helper.mlp.biases, strict=True)
        )
        self.inline = n_params <= _INLINE_MAX_PARAMS

    def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """One batched forward pass over the budgets; decisions by core ``decide``.

        Builds the same float32 input rows as core ``encode_inputs`` (the state's z-scores
        once, then the budget columns) without repeating the state per budget, and computes
        the state's z-scores once for both novelty outputs; tests pin the equality with
        ``Helper.decide``.
        """
        if features is None:
            raise ArtifactSchemaError("this model takes state.features, not state.text")
        h, stats = self.helper, self.helper.stats
        f = np.asarray(features, np.float64).reshape(1, -1)
        dim = stats.mean.shape[0]
        if f.shape[1] != dim:
            raise ShapeError(f"features: expected length {dim}, got {f.shape[1]}")
        c = np.asarray(budgets, np.float64).reshape(-1)
        if np.any(c < 0):
            raise BudgetError("remaining: budget must be >= 0")
        n = c.shape[0]
        x = np.empty((n, dim + 3), np.float32)
        x[:, :dim] = stats.normalise(f)
        x[:, dim] = c / max(h.cmax, 1)
        x[:, dim + 1] = c >= h.cost
        x[:, dim + 2] = np.float64(steps_left) / h.horizon
        p = h.mlp.probability(x)
        asks = p >= self.threshold
        # core ``decide`` (p >= threshold and c >= cost), vectorised over the budgets
        intervene = asks & (budgets >= self.cost)
        score = stats.score(f)
        outside = ((f < stats.low - stats.std) | (f > stats.high + stats.std)).any(axis=1)
        novel = outside | (score > stats.threshold)  # core FeatureStats.is_novel
        return Scored(budgets, p, asks, intervene, bool(novel[0]), float(score[0]))


def load_scorer(artifact: Artifact) -> Scorer:
    """Build the scorer for an artifact's ``kind`` (text scorers come from helpseek_text)."""
    if artifact.kind == "features":
        return FeaturesScorer(artifact)
    if artifact.kind == "text":
        try:
            module = importlib.import_module("helpseek_text")
        except ImportError as exc:
            raise ArtifactSchemaError(
                f"{artifact.path}: text artifact needs helpseek_text ({exc})"
            ) from exc
        factory = getattr(module, "load_scorer", None)
        if factory is None:
            raise ArtifactSchemaError(
                f"{artifact.path}: helpseek_text has no load_scorer(artifact)"
            )
        scorer = factory(artifact)
        if not isinstance(scorer, Scorer):
            raise ArtifactSchemaError(
                f"{artifact.path}: helpseek_text.load_scorer returned no Scorer"
            )
        return scorer
    raise ArtifactSchemaError(f"{artifact.path / 'manifest.json'}: unknown kind {artifact.kind!r}")


def target_intervention_rate(manifest: Mapping[str, Any]) -> float | None:
    """Manifest ``target_intervention_rate``: a number, or the mean of a per-budget list."""
    value = manifest.get("target_intervention_rate")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return float(np.mean(value))
    return None


async def _aclose(scorer: Scorer) -> None:
    close = getattr(scorer, "aclose", None)
    if close is not None:
        await close()


def _load(path: Path) -> Scorer:
    return load_scorer(load_artifact(path))


class ModelHolder:
    """The serving scorer; ``reload`` validates a new artifact off the loop, then swaps."""

    def __init__(self, scorer: Scorer, path: Path) -> None:
        self.scorer = scorer
        self.path = path
        self.loaded_at = time.time()
        self._lock = asyncio.Lock()

    @classmethod
    def open(cls, path: Path) -> ModelHolder:
        """Load at startup (raises HelpSeekError on a bad artifact: the process must not start)."""
        return cls(_load(path), path)

    async def reload(self, path: Path | None = None) -> tuple[Scorer, Scorer]:
        """Load and verify ``path`` (default: the current one) in a thread; swap on success.

        Returns (old, new). Raises HelpSeekError (or OSError) and keeps the old scorer.
        """
        async with self._lock:
            target = path or self.path
            new = await run_in_threadpool(_load, target)
            old, self.scorer, self.path, self.loaded_at = self.scorer, new, target, time.time()
            await _aclose(old)
            return old, new

    async def aclose(self) -> None:
        """Release the serving scorer's resources (the text scorer's batcher thread)."""
        await _aclose(self.scorer)

    async def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> tuple[Scorer, Scored]:
        """Score with the current scorer (inline or in the thread pool, as it asks)."""
        scorer = self.scorer
        if scorer.inline:
            return scorer, scorer.score(features, text, budgets, steps_left)
        ascore = getattr(scorer, "ascore", None)
        if ascore is not None:  # batches concurrent requests in its own worker thread
            return scorer, await ascore(features, text, budgets, steps_left)
        return scorer, await run_in_threadpool(scorer.score, features, text, budgets, steps_left)
