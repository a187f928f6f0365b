"""Save and load a trained text model as files that live inside an artifact directory.

Files (all small; the base model itself is *not* copied — it comes from its PyPI package)::

    text_model.json    format, version, the TextModelConfig, encoder family, feature dim,
                       base model + package version, head file names, helper constants
    text_prm.npz       PRM head, layout of helpseek_core.prm.MLPPRM (W0, b0, ..., x_mean, ...)
    text_helper.npz    helper head, layout of helpseek_core's helper.npz

:func:`save_text_model` returns ``{file name: path}`` so the artifact writer can list and hash
them (``write_artifact(..., extra_files=...)``). Loading never touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.helper import FeatureStats, Helper
from helpseek_core.mlp import MLP
from helpseek_core.prm import MLPPRM
from helpseek_text.config import TextModelConfig
from helpseek_text.encoders import Encoder, build_encoder
from helpseek_text.errors import TextModelFormatError
from helpseek_text.models import MINILM_PACKAGE, SMOLLM2_PACKAGE, package_version
from helpseek_text.scorer import TextScorer

__all__ = [
    "TEXT_HELPER_FILE",
    "TEXT_MODEL_FILE",
    "TEXT_MODEL_FORMAT",
    "TEXT_MODEL_VERSION",
    "TEXT_PRM_FILE",
    "load_text_model",
    "save_text_model",
]

TEXT_MODEL_FILE = "text_model.json"
TEXT_PRM_FILE = "text_prm.npz"
TEXT_HELPER_FILE = "text_helper.npz"
TEXT_MODEL_FORMAT = "helpseek-text-model"
TEXT_MODEL_VERSION = 1
_PACKAGES = {"minilm": MINILM_PACKAGE, "smollm2": SMOLLM2_PACKAGE}


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, *(), **arrays)  # type: ignore[arg-type]  # numpy stubs reject **dict


def save_text_model(directory: Path | str, scorer: TextScorer) -> dict[str, Path]:
    """Write the config JSON and the head ``.npz`` files; return ``{name: path}`` of each."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    heads: dict[str, str] = {}
    if scorer.prm is not None:
        _write_npz(out / TEXT_PRM_FILE, scorer.prm.to_arrays())
        files[TEXT_PRM_FILE] = out / TEXT_PRM_FILE
        heads["prm"] = TEXT_PRM_FILE
    helper_consts: dict[str, Any] | None = None
    if scorer.helper is not None:
        h = scorer.helper
        _write_npz(out / TEXT_HELPER_FILE, {**h.mlp.to_arrays(), **h.stats.to_arrays()})
        files[TEXT_HELPER_FILE] = out / TEXT_HELPER_FILE
        heads["helper"] = TEXT_HELPER_FILE
        helper_consts = {
            "cmax": h.cmax,
            "horizon": h.horizon,
            "cost": h.cost,
            "threshold": h.threshold,
        }
    if not heads:
        raise TextModelFormatError(f"{out}: nothing to save, the scorer has no heads")
    family = scorer.config.family
    doc = {
        "format": TEXT_MODEL_FORMAT,
        "version": TEXT_MODEL_VERSION,
        "config": scorer.config.to_json(),
        "family": family,
        "feature_dim": scorer.feature_dim,
        "base_model": scorer.encoder.base_model,
        "base_model_package": _PACKAGES[family],
        "base_model_version": scorer.encoder.base_model_version,
        "heads": heads,
        "helper": helper_consts,
    }
    (out / TEXT_MODEL_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True))
    files[TEXT_MODEL_FILE] = out / TEXT_MODEL_FILE
    return files


def _read_doc(root: Path) -> dict[str, Any]:
    path = root / TEXT_MODEL_FILE
    if not path.is_file():
        raise TextModelFormatError(f"{path}: text model config is missing")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TextModelFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != TEXT_MODEL_FORMAT:
        raise TextModelFormatError(f"{path}: not a {TEXT_MODEL_FORMAT} file")
    if doc.get("version") != TEXT_MODEL_VERSION:
        raise TextModelFormatError(
            f"{path}: version {doc.get('version')!r} is not supported "
            f"(this build reads {TEXT_MODEL_VERSION})"
        )
    return doc


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise TextModelFormatError(f"{path}: head file is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError) as exc:
        raise TextModelFormatError(f"{path}: cannot be read as .npz ({exc})") from exc


def load_text_model(
    directory: Path | str,
    config: TextModelConfig | None = None,
    *,
    encoder: Encoder | None = None,
) -> TextScorer:
    """Load a saved text model; ``config`` may switch backend within a family (``lm`` <-> ``vllm``).

    ``encoder``: reuse an already-built encoder of the right family (e.g. across artifact
    reloads) instead of loading the base model again.
    """
    root = Path(directory)
    doc = _read_doc(root)
    where = str(root / TEXT_MODEL_FILE)
    saved = TextModelConfig.from_json(dict(doc.get("config") or {}), where)
    cfg = config or saved
    if cfg.family != doc.get("family") or saved.family != doc.get("family"):
        raise TextModelFormatError(
            f"{where}: trained on the {doc.get('family')!r} encoder; backend {cfg.backend!r} "
            f"uses {cfg.family!r}"
        )
    package = _PACKAGES[cfg.family]
    installed, trained = package_version(package), doc.get("base_model_version")
    if installed is not None and trained is not None and installed != trained:
        raise TextModelFormatError(
            f"{where}: heads were trained on {package}=={trained} but {installed} is installed; "
            f"install `{package}=={trained}` or retrain"
        )
    heads = doc.get("heads") or {}
    prm = helper = None
    if "prm" in heads:
        prm_path = root / str(heads["prm"])
        prm = MLPPRM.from_arrays(_read_npz(prm_path), str(prm_path))
    if "helper" in heads:
        hpath = root / str(heads["helper"])
        arrays = _read_npz(hpath)
        consts = doc.get("helper") or {}
        try:
            helper = Helper(
                MLP.from_arrays(arrays, str(hpath)),
                FeatureStats.from_arrays(arrays, str(hpath)),
                int(consts["cmax"]),
                int(consts["horizon"]),
                int(consts["cost"]),
                float(consts.get("threshold", 0.5)),
            )
        except KeyError as exc:
            raise TextModelFormatError(f"{where}: helper constants lack {exc}") from exc
        if helper.mlp.in_dim != helper.stats.mean.shape[0] + 3:
            raise TextModelFormatError(f"{hpath}: MLP input does not match features + 3")
    if prm is None and helper is None:
        raise TextModelFormatError(f"{where}: lists no heads")
    enc = encoder if encoder is not None else build_encoder(cfg)
    if enc.dim != int(doc.get("feature_dim", -1)):
        raise TextModelFormatError(
            f"{where}: heads expect {doc.get('feature_dim')} features, encoder gives {enc.dim}"
        )
    return TextScorer(cfg, enc, prm, helper)
