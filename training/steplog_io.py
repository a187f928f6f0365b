"""Step-log files: Parquet shards plus a JSON manifest (DESIGN.md §3).

A collection directory::

    manifest.json          schema_version, env spec, agent, expert, k, cost, seeds per split,
                           p grid, shards: [{name, split, task_id, episodes, rows}], counts
    shards/<name>.parquet  one StepLog each (here: one task seed per shard)

Each Parquet file carries ``helpseek.steplog`` JSON in its schema metadata (schema version,
feature dimension, feature names); ``features`` is a fixed-size list<float32> column,
``text`` an optional string column. A file without that metadata, with another schema
version, missing columns, or that Parquet cannot parse is refused with :class:`StepLogError`,
whose message starts with the file's path and says why.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from helpseek_core.errors import HelpSeekError
from helpseek_core.types import STEP_LOG_SCHEMA_VERSION, StepLog

__all__ = [
    "MANIFEST_NAME",
    "META_KEY",
    "StepLogError",
    "read_manifest",
    "read_shard",
    "read_steplog",
    "write_manifest",
    "write_steplog",
]

MANIFEST_NAME = "manifest.json"
META_KEY = b"helpseek.steplog"


_COLUMNS = (
    "episode_id", "task_id", "t", "state_key", "features", "action", "intervention_type",
    "cost", "duration", "next_state_key", "done", "truncated", "success", "behavior_p",
)  # fmt: skip


class StepLogError(ValueError):
    """A step-log file or directory cannot be used; the message names the path and why."""


def _atomic_write_bytes(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_steplog(
    log: StepLog,
    path: str | Path,
    feature_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one StepLog as a Parquet file (atomically: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, f = len(log), log.feature_dim
    cols: dict[str, pa.Array] = {}
    for name in _COLUMNS:
        if name == "features":
            flat = pa.array(log.features.reshape(-1), type=pa.float32())
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, f)
        else:
            cols[name] = pa.array(getattr(log, name))
    if log.text is not None:
        cols["text"] = pa.array(list(log.text), type=pa.string())
    meta = {
        "schema_version": STEP_LOG_SCHEMA_VERSION,
        "feature_dim": f,
        "feature_names": feature_names,
        "rows": n,
        **(extra or {}),
    }
    table = pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    _atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def read_shard(path: str | Path) -> tuple[StepLog, dict[str, Any]]:
    """Read one Parquet step-log file -> (StepLog, its metadata); refuse foreign or bad files."""
    path = Path(path)
    if not path.is_file():
        raise StepLogError(f"{path}: no such step-log file")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise StepLogError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise StepLogError(f"{path}: not a HelpSeek step log (no 'helpseek.steplog' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StepLogError(f"{path}: step-log metadata is not valid JSON ({exc})") from exc
    if meta.get("schema_version") != STEP_LOG_SCHEMA_VERSION:
        raise StepLogError(
            f"{path}: step-log schema version {meta.get('schema_version')!r}, "
            f"this reader needs {STEP_LOG_SCHEMA_VERSION}"
        )
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise StepLogError(f"{path}: step log lacks column(s) {missing}")
    dim = int(meta.get("feature_dim", -1))
    kw: dict[str, np.ndarray] = {}
    for name in _COLUMNS:
        col = table.column(name).combine_chunks()
        if name == "features":
            if not pa.types.is_fixed_size_list(col.type) or col.type.list_size != dim:
                raise StepLogError(f"{path}: 'features' is {col.type}, expected list<float>[{dim}]")
            kw[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
        else:
            kw[name] = col.to_numpy(zero_copy_only=False)
    text = None
    if "text" in table.column_names:
        text = tuple(table.column("text").to_pylist())
    try:
        return StepLog(**kw, text=text), meta
    except HelpSeekError as exc:
        raise StepLogError(f"{path}: {exc}") from exc


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically."""
    path = Path(directory) / MANIFEST_NAME
    text = json.dumps(manifest, indent=2, sort_keys=True)
    _atomic_write_bytes(path, lambda tmp: tmp.write_text(text))
    return path


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read and check a collection directory's ``manifest.json``."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise StepLogError(f"{path}: no step-log manifest (is {directory} a collection directory?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StepLogError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if manifest.get("schema_version") != STEP_LOG_SCHEMA_VERSION:
        raise StepLogError(
            f"{path}: manifest schema version {manifest.get('schema_version')!r}, "
            f"this reader needs {STEP_LOG_SCHEMA_VERSION}"
        )
    if not isinstance(manifest.get("shards"), list):
        raise StepLogError(f"{path}: manifest has no 'shards' list")
    return manifest


def read_steplog(path: str | Path, split: str | None = None) -> tuple[StepLog, dict[str, Any]]:
    """Read a collection directory (or one Parquet file) -> (StepLog, manifest).

    ``split`` ("train" / "test") keeps only the shards of that seed pool. Shards are read in
    manifest order, so the same directory always gives the same rows in the same order.
    """
    path = Path(path)
    if path.is_file():
        return read_shard(path)
    manifest = read_manifest(path)
    shards = [s for s in manifest["shards"] if split is None or s.get("split") == split]
    if not shards:
        raise StepLogError(f"{path}: no shards for split {split!r}")
    logs = [read_shard(path / "shards" / s["name"])[0] for s in shards]
    return StepLog.concat(logs), manifest
