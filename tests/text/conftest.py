"""Fixtures of the text path: real encoders, built once per session (the LM takes ~15 s)."""

from __future__ import annotations

import numpy as np
import pytest

from helpseek_text import TextModelConfig
from helpseek_text.encoders import EmbedEncoder, LMEncoder


@pytest.fixture(scope="session")
def embed_config() -> TextModelConfig:
    return TextModelConfig(backend="embed")


@pytest.fixture(scope="session")
def embed_encoder(embed_config: TextModelConfig) -> EmbedEncoder:
    return EmbedEncoder(embed_config)


@pytest.fixture(scope="session")
def lm_config() -> TextModelConfig:
    return TextModelConfig(backend="lm", batch_size=16)


@pytest.fixture(scope="session")
def lm_encoder(lm_config: TextModelConfig) -> LMEncoder:
    return LMEncoder(lm_config)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while these tests run (4x faster on the shared, loaded 2 cores:
    a SmolLM2 forward took 0.13 s with 1 thread vs 0.5-0.6 s with 2); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
