"""The artifact: a versioned, checksummed directory the service loads (docs/design.md §5).

Layout::

    manifest.json      schema_version, artifact_id, kind, feature schema and statistics,
                       Cmax, H, k, cost, budget_range, training config, evaluation summary,
                       files: {name: sha256}
    <name>.npz         weight files (numpy, allow_pickle=False)
    <other files>      any extra file listed in ``files`` (e.g. text-model weights)

Every name in ``files`` must stay inside the directory (no absolute path, no ``..``, no
symlink out): an artifact that lists ``../../etc/passwd`` is refused before anything is read.
``budget_range`` is ``[low, high]``, the remaining budgets the helper was trained on
(``[cost, cmax]``, filled in by :func:`write_artifact` when absent); a larger budget is
answered as at ``high`` (:mod:`helpseek_core.helper`).

This module is the only I/O in helpseek_core: both sides of the contract must read and write
it identically. The caller supplies clock and git revision (core reads no clock).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactMissingError,
    ArtifactSchemaError,
)

__all__ = [
    "ARTIFACT_SCHEMA_VERSION",
    "MANIFEST_NAME",
    "REQUIRED_KEYS",
    "Artifact",
    "confined",
    "load_artifact",
    "sha256_file",
    "write_artifact",
]

ARTIFACT_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = (
    "schema_version",
    "artifact_id",
    "created_at",
    "kind",
    "feature_schema",
    "cmax",
    "horizon",
    "k",
    "cost",
    "files",
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Artifact:
    """A loaded, verified artifact: its manifest and the arrays of each ``.npz`` file."""

    path: Path
    manifest: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]  # file name -> {array name -> array}

    @property
    def artifact_id(self) -> str:
        """Identifier written by the trainer (also the service's model version)."""
        return str(self.manifest["artifact_id"])

    @property
    def kind(self) -> str:
        """``features`` (numeric state vectors) or ``text`` (LLM path)."""
        return str(self.manifest["kind"])

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector the helper expects (0 for text artifacts)."""
        return int(self.manifest["feature_schema"]["dim"])

    @property
    def budget_range(self) -> tuple[int, int]:
        """Remaining budgets ``(low, high)`` the helper was trained on."""
        low, high = self.manifest.get("budget_range") or (
            self.manifest["cost"],
            self.manifest["cmax"],
        )
        return int(low), int(high)

    def file(self, name: str) -> Path:
        """Path of a listed file inside the artifact directory."""
        if name not in self.manifest["files"]:
            raise ArtifactMissingError(f"{self.path / name}: not listed in the manifest")
        return confined(self.path, name, self.path / MANIFEST_NAME)


def confined(root: Path, name: str, where: Path) -> Path:
    """``root / name``, refused (naming ``where``, the name and why) if it leaves ``root``."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise ArtifactSchemaError(f"{where}: file name {name!r} is not a plain relative path")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ArtifactSchemaError(
            f"{where}: file name {name!r} escapes the artifact directory {root}"
        )
    target = root / rel
    if not target.resolve().is_relative_to(root.resolve()):
        raise ArtifactSchemaError(
            f"{where}: file name {name!r} resolves outside the artifact directory {root} "
            f"(a symlink?)"
        )
    return target


def _check_budget_range(manifest: Mapping[str, Any], where: Path) -> None:
    value = manifest.get("budget_range")
    if value is None:
        return
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] <= value[1]
    )
    if not ok:
        raise ArtifactSchemaError(
            f"{where}: budget_range must be [low, high] integers, got {value!r}"
        )
    if value[1] != manifest["cmax"]:
        raise ArtifactSchemaError(
            f"{where}: budget_range high {value[1]} != cmax {manifest['cmax']} (budgets above "
            "cmax are answered as at cmax)"
        )


def write_artifact(
    directory: Path | str,
    manifest: Mapping[str, Any],
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    """Write ``arrays`` as ``.npz`` files plus ``manifest.json`` with their sha256.

    ``manifest`` must hold every key of REQUIRED_KEYS except ``files`` and
    ``schema_version``, which are filled in here. ``extra_files`` (name -> existing path
    inside ``directory``) are hashed and listed too. The manifest is written last, via a
    temporary file and rename, so a half-written artifact never looks complete.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    for name, group in arrays.items():
        if not name.endswith(".npz") or "/" in name:
            raise ArtifactSchemaError(f"{out / name}: array files must be plain '<name>.npz'")
        target = out / name
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in group.items()}
        np.savez(target, **payload)
        files[name] = sha256_file(target)
    for name, path in (extra_files or {}).items():
        confined(out, name, out / MANIFEST_NAME)
        p = Path(path)
        if not p.is_file():
            raise ArtifactMissingError(f"{p}: extra file does not exist")
        files[name] = sha256_file(p)
    full = dict(manifest)
    full["schema_version"] = ARTIFACT_SCHEMA_VERSION
    full["files"] = files
    missing = [k for k in REQUIRED_KEYS if k not in full]
    if missing:
        raise ArtifactSchemaError(f"{out / MANIFEST_NAME}: manifest lacks keys {missing}")
    full.setdefault("budget_range", [int(full["cost"]), int(full["cmax"])])
    _check_budget_range(full, out / MANIFEST_NAME)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(full, fh, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, out / MANIFEST_NAME)
    return out


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_artifact(directory: Path | str, expected_feature_dim: int | None = None) -> Artifact:
    """Load and verify an artifact; refuse it with a message naming the file and the reason.

    Checks: the directory and manifest exist and parse, the schema version matches, every
    required key is present, every listed file exists and matches its sha256, ``.npz``
    files load without pickle, and (if given) the feature dimension matches.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactMissingError(f"{root}: artifact directory does not exist")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise ArtifactMissingError(f"{mpath}: manifest.json is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactSchemaError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactSchemaError(f"{mpath}: manifest must be a JSON object")
    version = manifest.get("schema_version")
    if version != ARTIFACT_SCHEMA_VERSION:
        raise ArtifactSchemaError(
            f"{mpath}: schema_version {version!r} is not supported "
            f"(this build reads {ARTIFACT_SCHEMA_VERSION})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactSchemaError(f"{mpath}: manifest lacks keys {missing}")
    schema = manifest["feature_schema"]
    if not isinstance(schema, dict) or "dim" not in schema or "names" not in schema:
        raise ArtifactSchemaError(f"{mpath}: feature_schema must hold 'names' and 'dim'")
    if len(schema["names"]) != schema["dim"]:
        raise ArtifactSchemaError(
            f"{mpath}: feature_schema has {len(schema['names'])} names but dim {schema['dim']}"
        )
    if expected_feature_dim is not None and schema["dim"] != expected_feature_dim:
        raise ArtifactSchemaError(
            f"{mpath}: feature dimension {schema['dim']} != expected {expected_feature_dim}"
        )
    _check_budget_range(manifest, mpath)
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactSchemaError(f"{mpath}: 'files' must map file names to sha256")
    paths = {name: confined(root, name, mpath) for name in files}  # before reading any file
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, digest in files.items():
        fpath = paths[name]
        if not fpath.is_file():
            raise ArtifactMissingError(f"{fpath}: listed in the manifest but missing")
        actual = sha256_file(fpath)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"{fpath}: sha256 {actual[:12]}... does not match the manifest's {str(digest)[:12]}..."
            )
        if name.endswith(".npz"):
            try:
                with np.load(fpath, allow_pickle=False) as npz:
                    arrays[name] = {k: npz[k] for k in npz.files}
            except (ValueError, OSError) as exc:
                raise ArtifactError(f"{fpath}: cannot be read as .npz ({exc})") from exc
    return Artifact(path=root, manifest=manifest, arrays=arrays)
