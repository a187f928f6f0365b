"""helpseek_text: the text / LLM path — text states scored by a PRM and a helper.

Importing this package loads no model and imports neither torch nor vLLM; encoders import
them when built. helpseek_core never imports this package.

Public API::

    TextModelConfig(backend="embed" | "lm" | "vllm", ...)
    train_text_model(config, rng, prm=PRMExamples(...), helper=HelperExamples(...), ...)
    scorer.score(texts, actions=None) -> (B, 2)      scorer.decide_prob(texts, c, left) -> (B,)
    save_text_model(dir, scorer) -> {name: path}     load_text_model(dir, config=None)
    MicroBatcher(run_batch, max_batch=32, max_wait_s=0.005)
    load_scorer(artifact) -> TextArtifactScorer     the service's seam for ``text`` artifacts
"""

from helpseek_text.batching import BatcherStats, MicroBatcher
from helpseek_text.config import BACKENDS, Backend, TextModelConfig, encoder_family
from helpseek_text.errors import (
    BackendUnavailableError,
    BatcherError,
    ModelNotInstalledError,
    TextInputError,
    TextModelError,
    TextModelFormatError,
)
from helpseek_text.scorer import TextScorer, render_helper_text
from helpseek_text.service_adapter import TextArtifactScorer, TextScored, load_scorer
from helpseek_text.store import load_text_model, save_text_model
from helpseek_text.train import (
    HeadConfig,
    HelperExamples,
    PRMExamples,
    train_text_model,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailableError",
    "BatcherError",
    "BatcherStats",
    "HeadConfig",
    "HelperExamples",
    "MicroBatcher",
    "ModelNotInstalledError",
    "PRMExamples",
    "TextInputError",
    "TextArtifactScorer",
    "TextModelConfig",
    "TextModelError",
    "TextModelFormatError",
    "TextScored",
    "TextScorer",
    "encoder_family",
    "load_scorer",
    "load_text_model",
    "render_helper_text",
    "save_text_model",
    "train_text_model",
]
