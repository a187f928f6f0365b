"""The artifact: a versioned, checksummed directory the service loads (DESIGN.md §5).

Layout::

    manifest.json      schema_version, artifact_id, kind, feature schema and statistics,
                       Cmax, H, k, cost, training config, evaluation summary,
                       files: {name: sha256}
    <name>.npz         weight files (numpy, allow_pickle=False)
    <other files>      any extra file listed in ``files`` (e.g. text-model weights)

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

    def file(self, name: str) -> Path:
        """Path of a listed file inside the artifact directory."""
        if name not in self.manifest["files"]:
            raise ArtifactMissingError(f"{self.path / name}: not listed in the manifest")
        return self.path / name


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
    files = manifest["files"]
    if not isinstance(files, dict):
        raise ArtifactSchemaError(f"{mpath}: 'files' must map file names to sha256")
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, digest in files.items():
        fpath = root / name
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
