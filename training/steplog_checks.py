"""What a step log must satisfy before any stage reads it: column types, values, row order.

Every reader of :mod:`training.steplog_io` runs these checks, so a log with a missing column,
a wrong type, a null, an out-of-range value or rows out of order is refused with the file, the
row and the column named (:class:`StepLogError`), before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from helpseek_core.types import STEP_LOG_COLUMNS, StepLog

__all__ = ["StepLogError", "check_order", "check_types", "check_values"]

_COLUMNS = STEP_LOG_COLUMNS  # the record's columns, defined once in core

_INT = (
    "episode_id",
    "task_id",
    "t",
    "state_key",
    "action",
    "intervention_type",
    "cost",
    "duration",
    "next_state_key",
)
_BOOL = ("done", "truncated", "success")


class StepLogError(ValueError):
    """A step-log file or directory cannot be used; the message names the path and why."""


def check_types(table: pa.Table, path: Path) -> None:
    """Refuse a column of the wrong Parquet type or with a null, naming column and row."""
    for name in _COLUMNS:
        col = table.column(name)
        typ = col.type
        ok = (
            (name in _INT and pa.types.is_integer(typ))
            or (name in _BOOL and pa.types.is_boolean(typ))
            or (name == "behavior_p" and pa.types.is_floating(typ))
            or (
                name == "features"
                and pa.types.is_fixed_size_list(typ)
                and (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type))
            )
        )
        if not ok:
            want = (
                "integer"
                if name in _INT
                else "boolean"
                if name in _BOOL
                else "floating"
                if name == "behavior_p"
                else "fixed_size_list<float>"
            )
            raise StepLogError(f"{path}: column {name!r} has type {typ}, expected {want}")
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise StepLogError(f"{path}: row {row}, column {name!r}: null value")


def check_values(kw: dict[str, np.ndarray], path: Path) -> None:
    """Refuse values out of range, naming the first bad row and its column."""
    rules = (
        ("action", (kw["action"] != 0) & (kw["action"] != 1), "must be 0 or 1"),
        ("duration", kw["duration"] < 1, "must be >= 1"),
        ("cost", kw["cost"] < 0, "must be >= 0"),
        ("behavior_p", ~((kw["behavior_p"] >= 0) & (kw["behavior_p"] <= 1)), "must be in [0, 1]"),
        ("features", ~np.isfinite(kw["features"]).all(axis=1), "must be finite"),
    )
    for name, bad, why in rules:
        if bad.any():
            row = int(np.argmax(bad))
            val = kw[name][row]
            raise StepLogError(f"{path}: row {row}, column {name!r}: {why}, got {val}")


def check_order(log: StepLog, where: str | Path) -> None:
    """Refuse rows out of order, naming the file, row and column.

    Episodes contiguous, t advancing by duration, next_state_key chained to the next row's
    state_key, done on (only) an episode's last row, one success value per episode.
    """
    if len(log) == 0:
        raise StepLogError(f"{where}: the step log has no rows")
    ep = log.episode_id
    last = np.r_[ep[1:] != ep[:-1], True]  # last row of each run of equal episode ids
    runs = ep[last]
    if np.unique(runs).shape[0] != runs.shape[0]:
        seen: set[int] = set()
        starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
        for i in starts:
            if int(ep[i]) in seen:
                raise StepLogError(
                    f"{where}: row {int(i)}, column 'episode_id': episode {int(ep[i])} "
                    "continues after other episodes' rows (an episode's rows must be contiguous)"
                )
            seen.add(int(ep[i]))
    inner = np.flatnonzero(~last)  # rows followed by a row of the same episode
    t = log.t.astype(np.int64)
    checks = (
        (
            "t",
            t[inner + 1] != t[inner] + log.duration[inner],
            "the next row of this episode must have t = t + duration",
        ),
        (
            "next_state_key",
            log.next_state_key[inner] != log.state_key[inner + 1],
            "must equal the state_key of the episode's next row",
        ),
        ("done", log.done[inner], "set before the episode's last row"),
        (
            "success",
            log.success[inner] != log.success[inner + 1],
            "must be the same on every row of an episode",
        ),
    )
    for name, bad, why in checks:
        if bad.any():
            row = int(inner[np.argmax(bad)])
            raise StepLogError(f"{where}: row {row}, column {name!r}: {why}")
    if not log.done[last].all():
        row = int(np.flatnonzero(last)[np.argmax(~log.done[last])])
        raise StepLogError(f"{where}: row {row}, column 'done': an episode's last row must be done")
