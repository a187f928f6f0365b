"""The model the service answers with: a ``Scorer`` behind a holder that hot-swaps it.

``Scorer`` is the seam between HTTP and inference; it returns core's
:class:`helpseek_core.helper.Scored`. The artifact's ``kind`` picks the scorer through a small
registry (:data:`SCORERS`, extended with :func:`register_scorer`): ``features`` wraps
:class:`helpseek_core.helper.Helper` (numpy only); ``text`` is
``helpseek_text.service_adapter:load_scorer``, imported only when such an artifact is loaded,
so the service never imports torch otherwise. A scorer whose ``inline`` is False is run in
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from starlette.concurrency import run_in_threadpool

from helpseek_core.artifact import Artifact, load_artifact
from helpseek_core.errors import ArtifactSchemaError
from helpseek_core.helper import Helper, Scored

__all__ = [
    "SCORERS",
    "FeaturesScorer",
    "ModelHolder",
    "Scored",
    "Scorer",
    "load_scorer",
    "register_scorer",
    "target_intervention_rate",
]

_INLINE_MAX_PARAMS = 200_000  # above this a forward pass goes to the thread pool


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
        """Core :func:`~helpseek_core.helper.score_states` over the budgets (one forward pass)."""
        if features is None:
            raise ArtifactSchemaError("this model takes state.features, not state.text")
        return self.helper.score(features, budgets, steps_left)


ScorerFactory = Callable[[Artifact], Scorer]
# kind -> factory, or "module:function" imported on first use (keeps torch out of the service)
SCORERS: dict[str, ScorerFactory | str] = {
    "features": FeaturesScorer,
    "text": "helpseek_text.service_adapter:load_scorer",
    "typed": "service.typed_scorer:TypedScorer",  # several intervention types (issue 14)
}


def register_scorer(kind: str, factory: ScorerFactory | str) -> None:
    """Serve artifacts of ``kind`` with ``factory(artifact) -> Scorer`` (or "module:function")."""
    SCORERS[kind] = factory


def _factory(kind: str, where: Path) -> ScorerFactory:
    entry = SCORERS.get(kind)
    if entry is None:
        raise ArtifactSchemaError(f"{where / 'manifest.json'}: unknown kind {kind!r}")
    if not isinstance(entry, str):
        return entry
    module_name, _, attr = entry.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ArtifactSchemaError(f"{where}: a {kind} artifact needs {entry} ({exc})") from exc
    SCORERS[kind] = factory
    return factory


def load_scorer(artifact: Artifact) -> Scorer:
    """Build the scorer registered for the artifact's ``kind``."""
    scorer = _factory(artifact.kind, artifact.path)(artifact)
    if not isinstance(scorer, Scorer):
        raise ArtifactSchemaError(
            f"{artifact.path}: the {artifact.kind} factory returned no Scorer"
        )
    return scorer


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
