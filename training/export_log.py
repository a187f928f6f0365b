"""``helpseek export-log``: the service's decision log -> a Phase I step log for the next round.

Input: the JSONL file the service writes (``service/decision_log.py``, docs/service.md): one
object per line, ``"record": "decision"`` for each ``/should_intervene`` answer and
``"record": "outcome"`` when a session closes. Output: a step-log directory in the same format
``helpseek collect`` writes (``manifest.json`` + ``shards/*.parquet``, split ``train``), so
``helpseek prm`` and the Phase II estimator read it unchanged.

Mapping (one step-log row per decision record of a session that has an outcome):

- episodes are the sessions, keyed by (tenant, session id); decisions without a session id
  (stateless mode) and sessions without an outcome are skipped and counted in the manifest;
- rows are ordered by ``t`` (then by log order); ``duration`` is the step gap to the next
  decision (the last row: ``steps - t`` from the outcome, at least 1);
- ``next_state_key`` is the next decision's ``state_key`` (the last row: its own key — the
  row is ``done``, so the estimator sends it to a terminal);
- ``success`` is the outcome's; ``truncated`` is set on a failed episode whose last decision
  had no steps left after it (``steps_left - duration <= 0``);
- ``cost``, ``action``, ``intervention_type``, ``behavior_p`` are copied; ``task_id`` is the
  episode's index (live sessions have no task seed).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.types import STEP_LOG_SCHEMA_VERSION, StepLog
from training.steplog_io import StepLogError, write_manifest, write_steplog

__all__ = ["ExportConfig", "add_arguments", "decisions_to_steplog", "from_args", "main", "read_jsonl"]


@dataclass(frozen=True)
class ExportConfig:
    """Convert a service decision log into a step log."""

    log: Path
    """The service's JSONL decision log."""
    out: Path
    """Output step-log directory (``manifest.json`` + ``shards/``)."""
    feature_names: tuple[str, ...] | None = None
    """Feature names for the step-log metadata (default: f0, f1, ...)."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSONL file; a bad line raises StepLogError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise StepLogError(f"{path}: no such decision log")
    records = []
    with path.open(encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StepLogError(f"{path}:{no}: not valid JSON ({exc})") from exc
            if not isinstance(rec, dict) or rec.get("record") not in ("decision", "outcome"):
                raise StepLogError(f"{path}:{no}: not a decision-log record")
            records.append(rec)
    return records


def decisions_to_steplog(records: list[dict[str, Any]]) -> tuple[StepLog, dict[str, int]]:
    """Group decision records into episodes closed by an outcome; return the log and counts."""
    decisions: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    outcomes: dict[tuple[str, str], dict[str, Any]] = {}
    stateless = 0
    for i, rec in enumerate(records):
        sid = rec.get("episode_id")
        if sid is None:
            stateless += rec["record"] == "decision"
            continue
        key = (str(rec.get("tenant", "")), str(sid))
        if rec["record"] == "decision":
            decisions[key].append((i, rec))
        else:
            outcomes[key] = rec
    cols: dict[str, list[Any]] = defaultdict(list)
    feats: list[np.ndarray] = []
    n_ep = 0
    for key in sorted(decisions, key=lambda k: decisions[k][0][0]):
        if key not in outcomes:
            continue
        rows = [r for _, r in sorted(decisions[key], key=lambda p: (int(p[1]["t"]), p[0]))]
        if any(r.get("features") is None for r in rows):
            raise StepLogError(f"session {key[1]!r}: a decision has no feature vector (text-only)")
        out = outcomes[key]
        ts = [int(r["t"]) for r in rows]
        for j, r in enumerate(rows):
            last = j == len(rows) - 1
            end = int(out.get("steps", ts[j] + 1)) if last else ts[j + 1]
            dur = max(end - ts[j], 1)
            left = r.get("steps_left")
            cols["episode_id"].append(n_ep)
            cols["task_id"].append(n_ep)
            cols["t"].append(ts[j])
            cols["state_key"].append(int(r["state_key"]))
            cols["action"].append(int(r["action"]))
            cols["intervention_type"].append(int(r.get("intervention_type", 0)))
            cols["cost"].append(int(r.get("cost", 0)))
            cols["duration"].append(dur)
            cols["next_state_key"].append(int(r["state_key"] if last else rows[j + 1]["state_key"]))
            cols["done"].append(last)
            cols["truncated"].append(
                last and not out["success"] and left is not None and int(left) - dur <= 0
            )
            cols["success"].append(bool(out["success"]))
            cols["behavior_p"].append(float(r.get("behavior_p", r["action"])))
            feats.append(np.asarray(r["features"], np.float32))
        n_ep += 1
    if not feats:
        raise StepLogError("decision log: no session has both decisions and an outcome")
    log = StepLog(**{k: np.asarray(v) for k, v in cols.items()}, features=np.stack(feats))
    counts = {
        "episodes": n_ep,
        "rows": len(log),
        "sessions_without_outcome": sum(1 for k in decisions if k not in outcomes),
        "stateless_decisions": int(stateless),
    }
    return log, counts


def main(cfg: ExportConfig) -> Path:
    """Read the decision log, write the step-log directory, return it."""
    log, counts = decisions_to_steplog(read_jsonl(cfg.log))
    names = list(cfg.feature_names or (f"f{i}" for i in range(log.feature_dim)))
    if len(names) != log.feature_dim:
        raise StepLogError(f"{cfg.log}: {len(names)} feature names for dimension {log.feature_dim}")
    out = Path(cfg.out)
    name = "decision-log.parquet"
    write_steplog(log, out / "shards" / name, feature_names=names)
    successes = int(log.success[log.done].sum())
    manifest = {
        "schema_version": STEP_LOG_SCHEMA_VERSION,
        "kind": "steplog",
        "source": {"decision_log": str(cfg.log)},
        "env": "service",
        "agent": "production",
        "expert": "production",
        "feature_names": names,
        "feature_dim": log.feature_dim,
        "horizon": int((log.t.astype(np.int64) + log.duration).max()),
        "shards": [{"name": name, "split": "train", "episodes": counts["episodes"],
                    "rows": counts["rows"], "successes": successes}],  # fmt: skip
        "counts": {"train": {**counts, "success_rate": successes / counts["episodes"]}},
    }
    write_manifest(out, manifest)
    print(f"[helpseek export-log] {counts} -> {out}", flush=True)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek export-log``."""
    parser.add_argument("--log", required=True, type=Path, help="the service's decisions.jsonl")
    parser.add_argument("--out", required=True, type=Path, help="output step-log directory")
    parser.add_argument("--feature-names", help="comma-separated feature names")


def from_args(ns: argparse.Namespace) -> ExportConfig:
    """Build the config from parsed arguments."""
    names = tuple(ns.feature_names.split(",")) if ns.feature_names else None
    return ExportConfig(log=ns.log, out=ns.out, feature_names=names)
