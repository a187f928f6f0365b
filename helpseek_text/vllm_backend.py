"""The ``vllm`` backend: SmolLM2 served by vLLM on a CUDA GPU, numerically consistent with ``lm``.

Consistency by construction:

- **same weights** — vLLM loads a Hugging Face checkpoint exported from the very GGUF the ``lm``
  backend dequantises (:func:`export_hf_checkpoint`; float32 safetensors, about 540 MB), not the
  GGUF through vLLM's own quantised kernels;
- **same tokens** — texts are tokenised here by the ``lm`` tokenizer (same truncation) and
  handed to vLLM as token ids;
- **same feature** — vLLM's pooling runner with ``LAST`` pooling returns the final post-norm
  hidden state of the last token; it is L2-normalised here exactly as in ``lm`` (so whether
  vLLM normalised too does not matter);
- **same heads** — the numpy heads of helpseek_core run on the features.

In float32 the features agree to about 1e-5 and head probabilities to better than 1e-3
(the test pins |Δp| <= 0.02 to leave room for ``vllm_dtype="bfloat16"``).

vLLM is imported only when a :class:`VLLMEncoder` is built. Without the package the error names
the ``vllm`` extra; without CUDA it is a :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_text.config import TextModelConfig
from helpseek_text.errors import BackendUnavailableError, ModelNotInstalledError
from helpseek_text.models import SMOLLM2_PACKAGE, package_version, smollm2_gguf
from helpseek_text.tokens import check_texts, l2_normalise, load_smollm2_tokenizer, tokenize

__all__ = ["EXPORT_MARKER", "VLLMEncoder", "default_checkpoint_dir", "export_hf_checkpoint"]

EXPORT_MARKER = "helpseek_export.json"


def default_checkpoint_dir() -> Path:
    """``~/.cache/helpseek/smollm2-hf``: where the exported checkpoint goes by default."""
    return Path.home() / ".cache" / "helpseek" / "smollm2-hf"


def export_hf_checkpoint(config: TextModelConfig, out_dir: Path | str | None = None) -> Path:
    """Write the dequantised SmolLM2 (float32 safetensors + tokenizer) for vLLM; return its dir.

    Idempotent: a directory whose marker names the same GGUF file and package version is reused.
    Runs on CPU (transformers); no network.
    """
    gguf = smollm2_gguf(config.model_path)
    out = Path(out_dir or config.vllm_checkpoint_dir or default_checkpoint_dir())
    marker = {"gguf": gguf.name, "package_version": package_version(SMOLLM2_PACKAGE)}
    mpath = out / EXPORT_MARKER
    if mpath.is_file() and json.loads(mpath.read_text()) == marker:
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    load_smollm2_tokenizer(config).save_pretrained(str(out))
    mpath.write_text(json.dumps(marker))
    return out


def _build_llm(vllm: Any, checkpoint: Path, config: TextModelConfig) -> Any:
    """Construct ``vllm.LLM`` as a LAST-token pooling model across vLLM API generations."""
    common = {
        "model": str(checkpoint),
        "tokenizer": str(checkpoint),
        "dtype": config.vllm_dtype,
        "gpu_memory_utilization": config.vllm_gpu_memory_utilization,
        "max_model_len": max(config.max_length, 512),
        "enforce_eager": True,
        "seed": 0,
    }
    try:
        from vllm.config import PoolerConfig

        pooler: Any = PoolerConfig(pooling_type="LAST")
    except (ImportError, TypeError):
        pooler = None
    attempts: list[dict[str, Any]] = []
    for pool_key in ("pooler_config", "override_pooler_config"):
        extra = {pool_key: pooler} if pooler is not None else {}
        attempts.append({"runner": "pooling", "convert": "embed", **extra})
        attempts.append({"task": "embed", **extra})
    attempts.append({"task": "embed"})
    errors: list[str] = []
    for kwargs in attempts:
        try:
            return vllm.LLM(**common, **kwargs)
        except TypeError as exc:  # an argument this vLLM version does not know
            errors.append(f"{sorted(kwargs)}: {exc}")
    raise BackendUnavailableError(
        "vLLM did not accept any known pooling configuration: " + " | ".join(errors)
    )


class VLLMEncoder:
    """SmolLM2 last-token features computed by vLLM (CUDA); same contract as ``LMEncoder``."""

    family = "smollm2"

    def __init__(self, config: TextModelConfig) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ModelNotInstalledError(
                "the 'vllm' backend needs the PyPI package 'vllm' (CUDA build): install the "
                "`vllm` extra with `pip install 'helpseek[vllm]'` on a machine with an NVIDIA GPU"
            )
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "the 'vllm' backend needs a CUDA GPU and none is visible; use backend 'lm' on CPU"
            )
        import vllm

        self.config = config
        self.tokenizer = load_smollm2_tokenizer(config)
        self.checkpoint = export_hf_checkpoint(config)
        self.llm = _build_llm(vllm, self.checkpoint, config)
        self._tokens_prompt = _tokens_prompt_type()
        self.dim = 576
        self.base_model = "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised for vLLM)"
        self.base_model_version = package_version(SMOLLM2_PACKAGE)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, 576) L2-normalised last-token hidden states from vLLM."""
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        ids = tokenize(self.tokenizer, items, self.config.max_length)
        prompts = [self._tokens_prompt(prompt_token_ids=x) for x in ids]
        method = getattr(self.llm, "embed", None) or self.llm.encode
        outputs = method(prompts, use_tqdm=False)
        rows = [np.asarray(_embedding_of(o), np.float32).reshape(-1) for o in outputs]
        return l2_normalise(np.stack(rows))


def _tokens_prompt_type() -> Any:
    try:
        from vllm.inputs import TokensPrompt
    except ImportError:  # very old vLLM: a plain dict works
        return dict
    return TokensPrompt


def _embedding_of(output: Any) -> Any:
    inner = output.outputs
    for name in ("embedding", "data"):
        if hasattr(inner, name):
            value = getattr(inner, name)
            return value.cpu().numpy() if hasattr(value, "cpu") else value
    raise BackendUnavailableError(f"unrecognised vLLM pooling output {type(inner).__name__}")
