"""Text helpers every backend shares: input checks, normalisation, the SmolLM2 tokenizer.

Kept apart from :mod:`helpseek_text.encoders` so that the ``vllm`` backend can use them
without importing the encoders module that builds it (no import cycle).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from helpseek_text.config import TextModelConfig
from helpseek_text.errors import ModelNotInstalledError, TextInputError
from helpseek_text.models import SMOLLM2_PACKAGE, smollm2_gguf

__all__ = [
    "check_texts",
    "import_torch_transformers",
    "l2_normalise",
    "load_smollm2_tokenizer",
    "tokenize",
]


def check_texts(texts: Sequence[str], where: str = "texts") -> list[str]:
    """Validate a batch of texts (a list of non-empty strings) and return it as a list."""
    if isinstance(texts, str):
        raise TextInputError(f"{where}: expected a list of strings, got one string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str) or not t.strip():
            raise TextInputError(f"{where}[{i}]: must be a non-empty string")
    return out


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); an all-zero row stays zero."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def import_torch_transformers(package: str) -> tuple[Any, Any]:
    """Import torch and transformers offline, or raise ModelNotInstalledError naming the extra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - the llm extra is installed here
        raise ModelNotInstalledError(
            f"the {package!r} backend needs torch and transformers: install the `llm` extra "
            f"(`pip install 'helpseek[llm]'`) ({exc})"
        ) from exc
    return torch, transformers


def load_smollm2_tokenizer(config: TextModelConfig) -> Any:
    """Load the SmolLM2 tokenizer from the GGUF file (shared by ``lm`` and ``vllm``: same tokens)."""
    gguf = smollm2_gguf(config.model_path)
    _, transformers = import_torch_transformers(SMOLLM2_PACKAGE)
    tok = transformers.AutoTokenizer.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, local_files_only=True
    )
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length`` (the exact ids every SmolLM2 path uses)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(map(int, ids)) for ids in enc["input_ids"]]
