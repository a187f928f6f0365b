"""Serve a ``text`` artifact: ``load_scorer(artifact)`` is the service's seam for the LLM path.

The service (``service.model_holder``) imports this lazily — only when the artifact's manifest
says ``kind: "text"`` — and gets back an object that satisfies its ``Scorer`` protocol:

- ``score(features, text, budgets, steps_left) -> Scored`` (core's record; synchronous, one
  batched forward pass over the budgets), and
- ``ascore(...)`` (the same, awaited): the request's (text, budget) rows are submitted together
  to a :class:`~helpseek_text.batching.MicroBatcher`, which runs the forward pass in its own
  worker thread and merges the rows of concurrent requests (other sessions) into one batch. The event
  loop never runs torch, so ``/healthz`` keeps answering during a slow forward pass.

``aclose()`` stops the batcher (the service calls it at shutdown and after a reload swap).
Encoders are cached per encoder configuration, so a reload of a retrained artifact does not
load the base model again.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from helpseek_core.artifact import Artifact
from helpseek_core.errors import ArtifactSchemaError
from helpseek_core.helper import Scored
from helpseek_text.batching import MicroBatcher
from helpseek_text.config import TextModelConfig
from helpseek_text.encoders import Encoder, build_encoder
from helpseek_text.errors import TextInputError, TextModelFormatError
from helpseek_text.scorer import TextScorer
from helpseek_text.store import TEXT_MODEL_FILE, load_text_model

__all__ = ["TEXT_KIND", "TextArtifactScorer", "TextScored", "cached_encoder", "load_scorer"]

TEXT_KIND = "text"
Row = tuple[str, int, int]  # (state text, remaining budget, steps left)
RowResult = tuple[float, bool, float]  # (probability, novel, novelty score)


TextScored = Scored  # the name this package exported before ``Scored`` moved to core


_ENCODERS: dict[str, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def cached_encoder(config: TextModelConfig) -> Encoder:
    """Build the encoder of ``config`` once per process (reused across artifact reloads)."""
    key = json.dumps(
        {k: v for k, v in config.to_json().items() if k not in ("budget_in_prompt",)},
        sort_keys=True,
    )
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = build_encoder(config)
        return _ENCODERS[key]


class TextArtifactScorer:
    """A text artifact behind the service's ``Scorer`` protocol (see the module docstring)."""

    kind = TEXT_KIND
    feature_dim = 0
    inline = False  # a forward pass never runs on the event loop

    def __init__(
        self,
        artifact: Artifact,
        scorer: TextScorer,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
    ) -> None:
        helper = scorer.helper
        if helper is None:
            raise TextModelFormatError(f"{artifact.path}: the text model has no helper head")
        m = artifact.manifest
        self.model_version = artifact.artifact_id
        self.horizon = int(m["horizon"])
        self.cmax = int(helper.cmax)
        self.cost = int(helper.cost)
        self.threshold = float(helper.threshold)
        self.manifest: Mapping[str, Any] = m
        self.text_scorer = scorer
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self._batcher: MicroBatcher[Row, RowResult] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- scoring -------------------------------------------------------------------------------
    def run_rows(self, rows: list[Row]) -> list[RowResult]:
        """Score (text, c, steps left) rows in one batched forward pass (the batch function)."""
        texts = [r[0] for r in rows]
        c = np.array([r[1] for r in rows], np.int64)
        left = np.array([r[2] for r in rows], np.int64)
        out = self.text_scorer.decide(texts, c, left)
        return [(d.probability, d.novel, d.novelty_score) for d in out]

    def _rows(self, text: str | None, budgets: np.ndarray, steps_left: int) -> list[Row]:
        if text is None:
            raise TextInputError("this text model takes state.text, not state.features")
        if not text.strip():
            raise TextInputError("state.text must be a non-empty string")
        return [(text, int(c), int(steps_left)) for c in np.asarray(budgets).reshape(-1)]

    def _scored(self, budgets: np.ndarray, results: list[RowResult]) -> Scored:
        b = np.asarray(budgets, np.int64).reshape(-1)
        p = np.array([r[0] for r in results], np.float64)
        asks = p >= self.threshold
        # novelty of the state as asked at the highest budget of the window (the one the
        # session normally holds); the budget line changes the text only slightly
        _, novel, score = results[-1]
        return Scored(b, p, asks, asks & (b >= self.cost), b > self.cmax, bool(novel), float(score))

    def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """Score one text state at each remaining budget (synchronous; blocks for the pass)."""
        return self._scored(budgets, self.run_rows(self._rows(text, budgets, steps_left)))

    async def ascore(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """Like :meth:`score`, off the event loop through the micro-batcher."""
        rows = self._rows(text, budgets, steps_left)
        batcher = self._batcher_here()
        return self._scored(budgets, await batcher.submit_many(rows))

    def _batcher_here(self) -> MicroBatcher[Row, RowResult]:
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._loop is not loop or self._batcher.closed:
            self._batcher = MicroBatcher(
                self.run_rows, max_batch=self.max_batch, max_wait_s=self.max_wait_s
            )
            self._loop = loop
        return self._batcher

    @property
    def batcher(self) -> MicroBatcher[Row, RowResult] | None:
        """The micro-batcher of the current event loop (None before the first ``ascore``)."""
        return self._batcher

    async def aclose(self) -> None:
        """Finish queued rows and stop the batcher's worker thread."""
        if self._batcher is not None:
            await self._batcher.aclose()


def load_scorer(
    artifact: Artifact, config: TextModelConfig | None = None, *, encoder: Encoder | None = None
) -> TextArtifactScorer:
    """Build the service scorer of a verified ``text`` artifact (its text model files inside).

    ``config`` may switch backend within an encoder family (``lm`` -> ``vllm``); ``encoder``
    reuses an encoder already built (default: the per-process cache).
    """
    if artifact.kind != TEXT_KIND:
        raise ArtifactSchemaError(
            f"{artifact.path / 'manifest.json'}: kind {artifact.kind!r}, expected 'text'"
        )
    if TEXT_MODEL_FILE not in artifact.manifest["files"]:
        raise TextModelFormatError(f"{artifact.path / TEXT_MODEL_FILE}: not listed in the manifest")
    if encoder is None:
        raw = json.loads((artifact.path / TEXT_MODEL_FILE).read_text())
        saved = TextModelConfig.from_json(dict(raw.get("config") or {}), TEXT_MODEL_FILE)
        encoder = cached_encoder(config or saved)
    scorer = load_text_model(artifact.path, config, encoder=encoder)
    return TextArtifactScorer(artifact, scorer)
