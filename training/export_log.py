"""``helpseek export-log``: the service's decision log -> a Phase I step log for the next round.

Input: the JSONL file the service writes (``service/decision_log.py``, docs/service.md): one
object per line, ``"record": "decision"`` for each ``/should_intervene`` answer and
``"record": "outcome"`` when a session closes. Output: a step-log directory in the same format
``helpseek collect`` writes (``manifest.json`` + ``shards/train.parquet`` + ``shards/test.parquet``:
a seeded ``test_fraction`` of the sessions held out), with ``k``, ``cost``, the step limits and
the export counts in the manifest, so ``helpseek prm --log`` and ``helpseek train --log`` read it
with no environment. The directory appears all at once, after every shard passed the schema
check (:func:`training.steplog_io.write_log_dir`).

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
  episode's index (live sessions have no task seed); its step limit is ``t + steps_left`` of
  its first decision that sent ``steps_left``;
- ``state_key`` is the record's: the agent's own ``state.key`` when it sent one, else the
  service's exact hash of the features (or text); explore sessions log their ``p`` as
  ``behavior_p`` (the probability the behaviour intervened; 0 where the budget could not pay);
- when the agent reported that it did not follow an answer (``action_taken_previous`` on the
  next decision, ``action_taken`` on the outcome for the last one), the row's ``action`` is the
  action taken, its ``behavior_p`` that action (a deterministic override) and its ``cost`` the
  session's intervention cost (the largest cost charged in the log, else 1) if it intervened,
  else 0.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.types import StepLog
from training.config import add_dataclass_arguments, from_namespace
from training.steplog_io import StepLogError, split_episodes, write_log_dir

__all__ = [
    "ExportConfig",
    "add_arguments",
    "decisions_to_steplog",
    "from_args",
    "main",
    "read_jsonl",
]


@dataclass(frozen=True)
class ExportConfig:
    """Convert a service decision log into a step log."""

    log: Path
    """The service's JSONL decision log."""
    out: Path
    """Output step-log directory (``manifest.json`` + ``shards/``)."""
    feature_names: tuple[str, ...] | None = None
    """Feature names for the step-log metadata (default: f0, f1, ...)."""
    test_fraction: float = 0.2
    """Fraction of the sessions written to the held-out ``test`` split."""
    split_seed: int = 0
    """Seed of that split."""
    k: int | None = None
    """Env steps per intervention for the manifest (default: the longest logged intervention)."""


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


def decisions_to_steplog(records: list[dict[str, Any]]) -> tuple[StepLog, dict[str, Any]]:
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
    unit = max((int(r.get("cost", 0)) for r in records if r["record"] == "decision"), default=1)
    unit = max(unit, 1)
    cols: dict[str, list[Any]] = defaultdict(list)
    feats: list[np.ndarray] = []
    limits: dict[int, int] = {}
    n_ep = 0
    for key in sorted(decisions, key=lambda k: decisions[k][0][0]):
        if key not in outcomes:
            continue
        rows = [r for _, r in sorted(decisions[key], key=lambda p: (int(p[1]["t"]), p[0]))]
        if any(r.get("features") is None for r in rows):
            raise StepLogError(f"session {key[1]!r}: a decision has no feature vector (text-only)")
        out = outcomes[key]
        ts = [int(r["t"]) for r in rows]
        lim = [int(r["t"]) + int(r["steps_left"]) for r in rows if r.get("steps_left") is not None]
        if lim:
            limits[n_ep] = lim[0]
        for j, r in enumerate(rows):
            last = j == len(rows) - 1
            end = int(out.get("steps", ts[j] + 1)) if last else ts[j + 1]
            dur = max(end - ts[j], 1)
            left = r.get("steps_left")
            cols["episode_id"].append(n_ep)
            cols["task_id"].append(n_ep)
            cols["t"].append(ts[j])
            told = out.get("action_taken") if last else rows[j + 1].get("action_taken_previous")
            taken = int(r["action"]) if told is None else int(told)
            followed = taken == int(r["action"])
            cols["state_key"].append(int(r["state_key"]))
            cols["action"].append(taken)
            cols["intervention_type"].append(int(r.get("intervention_type", 0)))
            cols["cost"].append(int(r.get("cost", 0)) if followed else unit * taken)
            cols["duration"].append(dur)
            cols["next_state_key"].append(int(r["state_key"] if last else rows[j + 1]["state_key"]))
            cols["done"].append(last)
            cols["truncated"].append(
                last and not out["success"] and left is not None and int(left) - dur <= 0
            )
            cols["success"].append(bool(out["success"]))
            cols["behavior_p"].append(
                float(r.get("behavior_p", r["action"])) if followed else float(taken)
            )
            feats.append(np.asarray(r["features"], np.float32))
        n_ep += 1
    if not feats:
        raise StepLogError("decision log: no session has both decisions and an outcome")
    columns: dict[str, Any] = {k: np.asarray(v) for k, v in cols.items()}
    log = StepLog(**columns, features=np.stack(feats))
    counts = {
        "episodes": n_ep,
        "rows": len(log),
        "sessions_without_outcome": sum(1 for k in decisions if k not in outcomes),
        "stateless_decisions": int(stateless),
        "step_limits": limits if len(limits) == n_ep else None,
    }
    return log, counts


def main(cfg: ExportConfig) -> Path:
    """Read the decision log, write the step-log directory (train + test), return it."""
    log, counts = decisions_to_steplog(read_jsonl(cfg.log))
    names = list(cfg.feature_names or (f"f{i}" for i in range(log.feature_dim)))
    if len(names) != log.feature_dim:
        raise StepLogError(f"{cfg.log}: {len(names)} feature names for dimension {log.feature_dim}")
    act = log.action == 1
    costs = np.unique(log.cost[act])
    if costs.shape[0] > 1:
        raise StepLogError(f"{cfg.log}: interventions cost {costs.tolist()}; one cost per log")
    cost = int(costs[0]) if costs.size else 1
    k = cfg.k if cfg.k is not None else int(log.duration[act].max()) if act.any() else 1
    limits = counts.pop("step_limits")
    splits = {"train": log}
    if counts["episodes"] >= 2 and cfg.test_fraction > 0:
        splits["train"], splits["test"] = split_episodes(log, cfg.test_fraction, cfg.split_seed)
    out = write_log_dir(
        cfg.out,
        splits,
        names,
        env="service",
        agent="production",
        expert="production",
        k=k,
        cost=cost,
        step_limits=limits,
        extra={
            "source": {"decision_log": str(cfg.log)},
            "export": counts,
            "split": {"test_fraction": cfg.test_fraction, "seed": cfg.split_seed},
        },
    )
    print(f"[helpseek export-log] {counts} -> {out}", flush=True)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek export-log`` (derived from :class:`ExportConfig`)."""
    add_dataclass_arguments(parser, ExportConfig)


def from_args(ns: argparse.Namespace) -> ExportConfig:
    """Build the config from parsed arguments."""
    return from_namespace(ExportConfig, ns)
