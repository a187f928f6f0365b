"""Step-log files: Parquet shards plus a JSON manifest — the schema every source writes.

This is the format ``helpseek collect`` and ``helpseek export-log`` write and that
``helpseek prm`` / ``helpseek train --log`` read; a user's own log is written with
:func:`write_log_dir` (or by hand in this schema). docs/your-agent.md, "The step-log schema",
explains it for users.

A step-log directory::

    manifest.json          schema_version (1), kind "steplog", env, agent, expert, k, cost,
                           horizon, feature_names, feature_dim, shards: [{name, split, ...}],
                           optional: step_limits {task_id: limit}, counts, seeds, source
    shards/<name>.parquet  one StepLog each; ``split`` is "train" or "test"

Columns of a shard (one row per decision point, N rows; Parquet types):

=================  =====================  ================================================
column             type                   meaning
=================  =====================  ================================================
episode_id         integer                episode; an episode's rows are contiguous
task_id            integer                task instance (env seed); step limits are per task
t                  integer                env step of the decision point (episode's rows in
                                          order: t[i + 1] = t[i] + duration[i])
state_key          integer (int64)        exact state identity (the tabular model's key)
features           fixed_size_list<float> the helper's input, F = feature_dim, finite
action             integer                0 proceed, 1 intervene (the expert acts)
intervention_type  integer                0 (the expert takes over)
cost               integer                budget units charged (0 when proceeding)
duration           integer >= 1           env steps the row covers (1, or <= k)
next_state_key     integer                state after the row = the next row's state_key
done               boolean                the episode ended on this row (its last row)
truncated          boolean                ... by the step limit (a time-out)
success            boolean                the episode's outcome, the same on each row
behavior_p         floating in [0, 1]     P(intervene) of the policy that logged the row
text               string (optional)      the state's text rendering (the LLM path)
=================  =====================  ================================================

Each Parquet file carries ``helpseek.steplog`` JSON in its schema metadata (schema version,
feature dimension, feature names). A file without that metadata, with another schema version,
a missing column, a column of the wrong type, a null, a value out of range or rows out of
order is refused with :class:`StepLogError`, whose message starts with the file's path and
names the row and column.
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
from helpseek_core.types import STEP_LOG_COLUMNS, STEP_LOG_SCHEMA_VERSION, StepLog
from training.steplog_checks import StepLogError, check_order, check_types, check_values

__all__ = [
    "MANIFEST_NAME",
    "META_KEY",
    "StepLogError",
    "read_manifest",
    "check_order",
    "read_shard",
    "read_splits",
    "read_steplog",
    "split_episodes",
    "step_limits",
    "write_log_dir",
    "write_manifest",
    "write_steplog",
]

MANIFEST_NAME = "manifest.json"
META_KEY = b"helpseek.steplog"


_COLUMNS = STEP_LOG_COLUMNS  # the record's columns, defined once in core


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
    check_types(table, path)
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
    check_values(kw, path)
    text = None
    if "text" in table.column_names:
        if not pa.types.is_string(table.column("text").type):
            raise StepLogError(
                f"{path}: column 'text' has type {table.column('text').type}, expected string"
            )
        text = tuple(table.column("text").to_pylist())
    try:
        log = StepLog(**kw, text=text)
    except HelpSeekError as exc:
        raise StepLogError(f"{path}: {exc}") from exc
    check_order(log, path)
    return log, meta


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


def split_episodes(log: StepLog, test_fraction: float, seed: int = 0) -> tuple[StepLog, StepLog]:
    """Split a log by episode: a seeded ``test_fraction`` of its episodes is held out."""
    episodes = np.unique(log.episode_id)
    if episodes.shape[0] < 2:
        raise StepLogError("split_episodes: need at least 2 episodes to hold some out")
    n_test = min(max(int(round(test_fraction * episodes.shape[0])), 1), episodes.shape[0] - 1)
    test_eps = np.random.default_rng(seed).choice(episodes, n_test, replace=False)
    held = np.isin(log.episode_id, test_eps)
    return log.take(~held), log.take(held)


def read_splits(
    path: str | Path, test_fraction: float = 0.2, seed: int = 0
) -> tuple[StepLog, StepLog, dict[str, Any], str]:
    """(train, test, manifest, how): the log's own test split, else held-out episodes.

    ``how`` says which: ``"test split"`` or ``"held-out episodes (fraction f, seed s)"``.
    """
    path = Path(path)
    if path.is_file():
        log, meta = read_shard(path)
        train, test = split_episodes(log, test_fraction, seed)
        return train, test, meta, f"held-out episodes (fraction {test_fraction}, seed {seed})"
    manifest = read_manifest(path)
    splits = {s.get("split") for s in manifest["shards"]}
    if "train" not in splits:
        raise StepLogError(f"{path / MANIFEST_NAME}: no shard has split 'train'")
    train, _ = read_steplog(path, split="train")
    if "test" in splits:
        return train, read_steplog(path, split="test")[0], manifest, "test split"
    train, test = split_episodes(train, test_fraction, seed)
    return train, test, manifest, f"held-out episodes (fraction {test_fraction}, seed {seed})"


def step_limits(manifest: dict[str, Any], log: StepLog) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted task ids, their step limits) the manifest records for the log's tasks, or None.

    From ``step_limits`` ({task_id: limit}) or from shards that each hold one task
    (``task_id`` + ``horizon``, as ``helpseek collect`` writes them).
    """
    limits: dict[int, int] = {}
    if isinstance(manifest.get("step_limits"), dict):
        limits = {int(k): int(v) for k, v in manifest["step_limits"].items()}
    else:
        for s in manifest.get("shards", []):
            if "task_id" in s and "horizon" in s:
                limits[int(s["task_id"])] = int(s["horizon"])
    tasks = np.unique(log.task_id)
    if not limits or any(int(t) not in limits for t in tasks):
        return None
    return tasks, np.array([limits[int(t)] for t in tasks], np.int64)


def write_log_dir(
    out: str | Path,
    splits: dict[str, StepLog],
    feature_names: list[str],
    *,
    env: str,
    agent: str,
    expert: str,
    k: int,
    cost: int,
    step_limits: dict[int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a step-log directory (one shard per split) in this module's schema; return it.

    The writer API for a log from your own system: build a :class:`StepLog` per split
    ("train", optionally "test"), then call this. Every shard is checked by reading it back
    (types, ranges, order) before the manifest is written; the folder appears all at once.
    """
    from training.staging import staged_output

    if "train" not in splits:
        raise StepLogError(f"{out}: write_log_dir needs a 'train' split")
    with staged_output(Path(out), marker=MANIFEST_NAME) as stage:
        shards, counts = [], {}
        horizon = 0
        for split, log in splits.items():
            name = f"{split}.parquet"
            if len(feature_names) != log.feature_dim:
                raise StepLogError(
                    f"{out}: {len(feature_names)} feature names for dimension {log.feature_dim}"
                )
            write_steplog(log, stage / "shards" / name, feature_names=list(feature_names))
            read_shard(stage / "shards" / name)  # the schema check, before anything is kept
            n_ep = int(np.unique(log.episode_id).shape[0])
            wins = int(log.success[log.done].sum())
            shards.append(
                {
                    "name": name,
                    "split": split,
                    "episodes": n_ep,
                    "rows": len(log),
                    "successes": wins,
                }
            )
            counts[split] = {"episodes": n_ep, "rows": len(log), "success_rate": wins / n_ep}
            horizon = max(horizon, int((log.t.astype(np.int64) + log.duration).max()))
        manifest: dict[str, Any] = {
            "schema_version": STEP_LOG_SCHEMA_VERSION,
            "kind": "steplog",
            "env": env,
            "agent": agent,
            "expert": expert,
            "k": int(k),
            "cost": int(cost),
            "horizon": max([horizon, *(step_limits or {}).values()]),
            "feature_names": list(feature_names),
            "feature_dim": len(feature_names),
            "has_text": all(lg.text is not None for lg in splits.values()),
            "shards": shards,
            "counts": counts,
            **(extra or {}),
        }
        if step_limits:
            manifest["step_limits"] = {str(t): int(v) for t, v in sorted(step_limits.items())}
        write_manifest(stage, manifest)
    return Path(out)
