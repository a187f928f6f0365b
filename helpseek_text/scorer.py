"""TextScorer: the PRM and the helper over text states, on any backend.

A scorer is an encoder (see :mod:`helpseek_text.encoders`; one forward pass per input text)
followed by the numpy heads of helpseek_core, reused unchanged with the text feature vector
playing the part of the state features:

- PRM — :class:`helpseek_core.prm.MLPPRM`: ``x = [normalise(f(text)), a]`` -> P(success | text, a).
  The action is a head input, so **one** forward pass gives both columns.
- helper — :class:`helpseek_core.helper.Helper`: ``x = [normalise(f(text')), c/cmax,
  1[c >= cost], steps_left/horizon]`` where ``text'`` is the state text with the remaining
  budget and steps left written into it (:func:`render_helper_text`, when
  ``config.budget_in_prompt``). One forward pass per (text, c, steps left).

Both heads carry the feature statistics of their training texts, so the novelty flag of the
feature helper works for text too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from helpseek_core.helper import Decision, Helper, decide
from helpseek_core.prm import MLPPRM
from helpseek_text.config import TextModelConfig
from helpseek_text.encoders import Encoder, check_texts
from helpseek_text.errors import TextInputError, TextModelFormatError

__all__ = ["TextScorer", "render_helper_text"]


def render_helper_text(text: str, remaining: int, steps_left: int) -> str:
    """Render the helper's input text: the state followed by the budget line (the "prompt")."""
    return f"{text}\nRemaining help budget: {int(remaining)}. Steps left: {int(steps_left)}."


def _int_column(values: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise TextInputError(f"{name}: expected {n} values, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr.astype(np.float64))) or np.any(arr != np.round(arr)):
        raise TextInputError(f"{name}: values must be whole numbers")
    if np.any(arr < 0):
        raise TextInputError(f"{name}: values must be >= 0")
    return arr.astype(np.int64)


class TextScorer:
    """PRM and helper over text; ``score`` and ``decide_prob`` are the two verbs.

    Thread-safety: ``encode`` runs torch (or vLLM) which is safe to call from one worker
    thread at a time; the micro-batcher guarantees that in the service.
    """

    def __init__(
        self,
        config: TextModelConfig,
        encoder: Encoder,
        prm: MLPPRM | None = None,
        helper: Helper | None = None,
    ) -> None:
        if encoder.family != config.family:
            raise TextModelFormatError(
                f"encoder family {encoder.family!r} does not fit backend {config.backend!r}"
            )
        for name, head in (("prm", prm), ("helper", helper)):
            dim = None if head is None else int(head.stats.mean.shape[0])
            if dim is not None and dim != encoder.dim:
                raise TextModelFormatError(
                    f"{name} head expects {dim} features but the {config.backend} encoder "
                    f"gives {encoder.dim}"
                )
        self.config = config
        self.encoder = encoder
        self.prm = prm
        self.helper = helper

    @property
    def feature_dim(self) -> int:
        """Width D of the text features."""
        return int(self.encoder.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, D) float32 features (one forward pass per text)."""
        return self.encoder.encode(check_texts(texts))

    def helper_texts(
        self, texts: Sequence[str], remaining: object, steps_left: object
    ) -> list[str]:
        """Return the texts the helper's encoder sees (budget line added when configured)."""
        items = check_texts(texts)
        c = _int_column(remaining, len(items), "remaining")
        left = _int_column(steps_left, len(items), "steps_left")
        if not self.config.budget_in_prompt:
            return items
        return [render_helper_text(t, ci, li) for t, ci, li in zip(items, c, left, strict=True)]

    def score(self, texts: Sequence[str], actions: object | None = None) -> np.ndarray:
        """PRM: (B,) texts -> (B, 2) P(success | text, proceed / intervene).

        With ``actions`` (B,) of 0/1, returns (B,) P(success | text, actions[i]) instead.
        """
        if self.prm is None:
            raise TextModelFormatError("this text model has no PRM head")
        items = check_texts(texts)
        both = self.prm.score(self.encode(items)) if items else np.zeros((0, 2))
        if actions is None:
            return both
        a = _int_column(actions, len(items), "actions")
        if np.any(a > 1):
            raise TextInputError("actions: must be 0 (proceed) or 1 (intervene)")
        return both[np.arange(len(items)), a]

    def decide_prob(
        self, texts: Sequence[str], remaining: object, steps_left: object
    ) -> np.ndarray:
        """Return the helper's (B,) P(intervening is optimal) for texts, budgets, steps left."""
        helper = self._need_helper()
        rendered = self.helper_texts(texts, remaining, steps_left)
        if not rendered:
            return np.zeros(0)
        c = _int_column(remaining, len(rendered), "remaining")
        left = _int_column(steps_left, len(rendered), "steps_left")
        return helper.probability(self.encode(rendered), c, left)

    def decide(self, texts: Sequence[str], remaining: object, steps_left: object) -> list[Decision]:
        """Decide for each row with reason and novelty (one batched forward pass for all rows)."""
        helper = self._need_helper()
        rendered = self.helper_texts(texts, remaining, steps_left)
        if not rendered:
            return []
        c = _int_column(remaining, len(rendered), "remaining")
        left = _int_column(steps_left, len(rendered), "steps_left")
        feats = self.encode(rendered)
        probs = helper.probability(feats, c, left)
        novel = helper.stats.is_novel(feats)
        nscore = helper.stats.score(feats)
        out = []
        for i in range(len(rendered)):
            intervene, reason = decide(float(probs[i]), helper.threshold, int(c[i]), helper.cost)
            out.append(
                Decision(intervene, float(probs[i]), reason, bool(novel[i]), float(nscore[i]))
            )
        return out

    def _need_helper(self) -> Helper:
        if self.helper is None:
            raise TextModelFormatError("this text model has no helper head")
        return self.helper
