"""Records shared by every stage: the step log, the tabular model and solver results.

All records are frozen dataclasses over numpy arrays; ``__post_init__`` validates shapes,
dtypes and values and raises a named :mod:`helpseek_core.errors` error that says what is
wrong and where. Shape comments use N = logged rows, F = feature dimension, S = states of
the tabular model, H = horizon (step limit), C = Cmax + 1 budget levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from helpseek_core.errors import BudgetError, ProbabilityError, ShapeError

__all__ = [
    "PROCEED",
    "INTERVENE",
    "STEP_LOG_COLUMNS",
    "STEP_LOG_SCHEMA_VERSION",
    "BudgetedSolution",
    "LagrangianSolution",
    "StepLog",
    "TabularModel",
]

PROCEED = 0
INTERVENE = 1
STEP_LOG_SCHEMA_VERSION = 1


def _check_len(name: str, arr: np.ndarray, n: int, where: str) -> None:
    if arr.ndim < 1 or arr.shape[0] != n:
        raise ShapeError(f"{where}: column {name!r} has length {arr.shape[:1]}, expected {n}")


def _check_finite(name: str, arr: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = int(np.argwhere(bad)[0][0])
        raise ProbabilityError(f"{where}: column {name!r} has a non-finite value at row {idx}")


@dataclass(frozen=True, eq=False)
class StepLog:
    """Phase I output: one row per decision point (docs/design.md §3).

    An ``action == 1`` row is a whole k-step intervention (a macro action): ``duration`` env
    steps, ``cost`` budget units, ending in ``next_state_key``. ``done`` marks the row on
    which the episode ended; ``truncated`` says it ended by the step limit (a time-out is
    not a terminal state of the model: the horizon handles it). ``success`` is the
    episode's outcome, repeated on every row of the episode.
    """

    episode_id: np.ndarray  # (N,) int64
    task_id: np.ndarray  # (N,) int64   environment seed / task instance
    t: np.ndarray  # (N,) int32   env step at the decision point
    state_key: np.ndarray  # (N,) int64   exact state identity (stable hash)
    features: np.ndarray  # (N, F) float32   the helper's input
    action: np.ndarray  # (N,) int8   0 proceed, 1 intervene
    intervention_type: np.ndarray  # (N,) int8   0 = expert takes over (only type so far)
    cost: np.ndarray  # (N,) int16   budget units charged (0 when proceeding)
    duration: np.ndarray  # (N,) int16   env steps this row covers (1, or <= k)
    next_state_key: np.ndarray  # (N,) int64
    done: np.ndarray  # (N,) bool   the episode ended on this row
    truncated: np.ndarray  # (N,) bool   ... by the step limit
    success: np.ndarray  # (N,) bool   episode outcome
    behavior_p: np.ndarray  # (N,) float32   random intervention probability of the rollout
    text: tuple[str, ...] | None = None  # (N,) optional text rendering for the LLM path

    def __post_init__(self) -> None:
        where = "StepLog"
        n = int(np.asarray(self.episode_id).shape[0])
        casts = {
            "episode_id": np.int64,
            "task_id": np.int64,
            "t": np.int32,
            "state_key": np.int64,
            "action": np.int8,
            "intervention_type": np.int8,
            "cost": np.int16,
            "duration": np.int16,
            "next_state_key": np.int64,
            "done": np.bool_,
            "truncated": np.bool_,
            "success": np.bool_,
            "behavior_p": np.float32,
        }
        for name, dtype in casts.items():
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1:
                raise ShapeError(f"{where}: column {name!r} must be 1-D, got shape {arr.shape}")
            _check_len(name, arr, n, where)
            object.__setattr__(self, name, arr.astype(dtype, copy=False))
        feats = np.asarray(self.features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ShapeError(f"{where}: 'features' must have shape (N={n}, F), got {feats.shape}")
        _check_finite("features", feats, where)
        _check_finite("behavior_p", self.behavior_p, where)
        object.__setattr__(self, "features", feats)
        if np.any((self.action != 0) & (self.action != 1)):
            row = int(np.argmax((self.action != 0) & (self.action != 1)))
            raise ShapeError(f"{where}: 'action' must be 0 or 1, row {row} has {self.action[row]}")
        if np.any(self.cost < 0):
            raise BudgetError(f"{where}: 'cost' is negative at row {int(np.argmax(self.cost < 0))}")
        if np.any(self.duration < 1):
            raise ShapeError(f"{where}: 'duration' < 1 at row {int(np.argmax(self.duration < 1))}")
        if np.any((self.behavior_p < 0) | (self.behavior_p > 1)):
            raise ProbabilityError(f"{where}: 'behavior_p' outside [0, 1]")
        if self.text is not None:
            if len(self.text) != n:
                raise ShapeError(f"{where}: 'text' has {len(self.text)} entries, expected {n}")
            object.__setattr__(self, "text", tuple(self.text))

    def __len__(self) -> int:
        return int(self.episode_id.shape[0])

    @property
    def feature_dim(self) -> int:
        """Length F of each feature vector."""
        return int(self.features.shape[1])

    def take(self, rows: np.ndarray) -> StepLog:
        """Return the sub-log of the given row indices or boolean mask, in that order."""
        rows = np.asarray(rows)
        kw = {name: getattr(self, name)[rows] for name in STEP_LOG_COLUMNS}
        text = None
        if self.text is not None:
            idx = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
            text = tuple(self.text[int(i)] for i in idx)
        return StepLog(**kw, text=text)

    @staticmethod
    def concat(logs: list[StepLog]) -> StepLog:
        """Concatenate logs with the same feature dimension (episode ids must not clash)."""
        if not logs:
            raise ShapeError("StepLog.concat: no logs given")
        dims = {lg.feature_dim for lg in logs}
        if len(dims) != 1:
            raise ShapeError(f"StepLog.concat: feature dimensions differ: {sorted(dims)}")
        kw = {name: np.concatenate([getattr(lg, name) for lg in logs]) for name in STEP_LOG_COLUMNS}
        has_text = all(lg.text is not None for lg in logs)
        text = tuple(s for lg in logs for s in (lg.text or ())) if has_text else None
        return StepLog(**kw, text=text)


STEP_LOG_COLUMNS = (
    "episode_id",
    "task_id",
    "t",
    "state_key",
    "features",
    "action",
    "intervention_type",
    "cost",
    "duration",
    "next_state_key",
    "done",
    "truncated",
    "success",
    "behavior_p",
)


@dataclass(frozen=True, eq=False)
class TabularModel:
    """Estimated (or exact) MDP over S non-terminal states with two absorbing terminals.

    Row s of ``trans[a]`` holds the probabilities of reaching each non-terminal state;
    ``succ[a][s]`` and ``fail[a][s]`` hold the probabilities of the success / failure
    terminals, so each row of ``trans[a]`` plus ``succ`` plus ``fail`` sums to 1. Action 1
    is a macro action lasting ``k`` steps and costing ``cost`` budget units. A pair (s, a)
    with ``leaf_mask[s, a]`` set is not backed up: its Q-value is ``leaf_value[s, a]``
    (from a PRM; "score with PRMs" for rarely seen pairs).

    An intervention started fewer than ``k`` steps before the horizon is cut there: the expert
    acts for the j < k steps left and only success within those j steps counts.
    ``succ1_steps[j - 1, s]`` is that probability (j = 1 .. k; its last row equals
    ``succ[1]``). When it is not given, a cut intervention earns nothing (rows 0 .. k-2 are
    zero: success is known only at the end of the macro action); builders that know more
    (:func:`~helpseek_core.exact.model_from_policies`, :func:`~helpseek_core.model.estimate_model`)
    fill it in.
    """

    state_keys: np.ndarray  # (S,) int64, sorted ascending: index -> key
    trans: tuple[sp.csr_matrix, sp.csr_matrix]  # 2 x (S, S) float64, proceed / intervene
    succ: np.ndarray  # (2, S) float64   P(success terminal | s, a)
    fail: np.ndarray  # (2, S) float64   P(failure terminal | s, a)
    start: np.ndarray  # (S,) float64   start-state distribution
    horizon: int  # H: step limit of an episode
    k: int = 1  # duration of an intervention (macro action), in steps
    cost: int = 1  # budget units per intervention
    leaf_mask: np.ndarray | None = None  # (S, 2) bool   pairs valued by the PRM leaf
    leaf_value: np.ndarray | None = None  # (S, 2) float64   their value (success prob)
    counts: np.ndarray | None = None  # (S, 2) int64   visits per pair in the log
    succ1_steps: np.ndarray | None = None  # (k, S) float64   P(success within j expert steps)
    tol: float = field(default=1e-6, repr=False)

    def __post_init__(self) -> None:
        where = "TabularModel"
        keys = np.asarray(self.state_keys, dtype=np.int64)
        s = keys.shape[0]
        if keys.ndim != 1:
            raise ShapeError(f"{where}: state_keys must be 1-D, got shape {keys.shape}")
        if s > 1 and np.any(np.diff(keys) <= 0):
            raise ShapeError(f"{where}: state_keys must be sorted and unique")
        object.__setattr__(self, "state_keys", keys)
        for name, val in (("horizon", self.horizon), ("k", self.k)):
            if int(val) != val or val < 1:
                raise BudgetError(f"{where}: {name} must be a positive integer, got {val!r}")
        if int(self.cost) != self.cost or self.cost < 1:
            raise BudgetError(f"{where}: cost must be a positive integer, got {self.cost!r}")
        if len(self.trans) != 2:
            raise ShapeError(f"{where}: trans must hold 2 matrices (proceed, intervene)")
        mats = []
        for a, m in enumerate(self.trans):
            m = sp.csr_matrix(m, dtype=np.float64)
            if m.shape != (s, s):
                raise ShapeError(f"{where}: trans[{a}] has shape {m.shape}, expected ({s}, {s})")
            if m.nnz and (not np.all(np.isfinite(m.data)) or m.data.min() < 0):
                raise ProbabilityError(f"{where}: trans[{a}] has NaN or negative entries")
            mats.append(m)
        object.__setattr__(self, "trans", (mats[0], mats[1]))
        for name in ("succ", "fail"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (2, s):
                raise ShapeError(f"{where}: {name} has shape {arr.shape}, expected (2, {s})")
            if not np.all(np.isfinite(arr)) or arr.min(initial=0) < 0:
                raise ProbabilityError(f"{where}: {name} has NaN or negative entries")
            object.__setattr__(self, name, arr)
        leaf_mask = (
            np.zeros((s, 2), bool) if self.leaf_mask is None else np.asarray(self.leaf_mask, bool)
        )
        if leaf_mask.shape != (s, 2):
            raise ShapeError(f"{where}: leaf_mask has shape {leaf_mask.shape}, expected ({s}, 2)")
        object.__setattr__(self, "leaf_mask", leaf_mask)
        if self.leaf_value is None:
            leaf_value = np.zeros((s, 2))
        else:
            leaf_value = np.asarray(self.leaf_value, dtype=np.float64)
        if leaf_value.shape != (s, 2):
            raise ShapeError(f"{where}: leaf_value has shape {leaf_value.shape}, expected ({s}, 2)")
        if np.any(~np.isfinite(leaf_value[leaf_mask])):
            raise ProbabilityError(f"{where}: leaf_value is NaN where leaf_mask is set")
        object.__setattr__(self, "leaf_value", leaf_value)
        for a in (0, 1):
            row_sum = np.asarray(mats[a].sum(axis=1)).ravel() + self.succ[a] + self.fail[a]
            bad = (np.abs(row_sum - 1.0) > self.tol) & ~leaf_mask[:, a]
            if bad.any():
                i = int(np.argmax(bad))
                raise ProbabilityError(
                    f"{where}: row of state index {i} (key {int(keys[i])}), action {a} sums to "
                    f"{row_sum[i]:.6g}, not 1"
                )
        start = np.asarray(self.start, dtype=np.float64)
        if start.shape != (s,):
            raise ShapeError(f"{where}: start has shape {start.shape}, expected ({s},)")
        if not np.all(np.isfinite(start)) or start.min(initial=0) < 0:
            raise ProbabilityError(f"{where}: start has NaN or negative entries")
        if s and abs(start.sum() - 1.0) > self.tol:
            raise ProbabilityError(f"{where}: start sums to {start.sum():.6g}, not 1")
        object.__setattr__(self, "start", start)
        k = int(self.k)
        if self.succ1_steps is None:
            steps = np.zeros((k, s))
            steps[-1] = self.succ[1]
        else:
            steps = np.asarray(self.succ1_steps, dtype=np.float64)
            if steps.shape != (k, s):
                raise ShapeError(
                    f"{where}: succ1_steps has shape {steps.shape}, expected (k={k}, {s})"
                )
            if not np.all(np.isfinite(steps)) or steps.min(initial=0) < -self.tol:
                raise ProbabilityError(f"{where}: succ1_steps has NaN or negative entries")
            if k > 1 and np.any(np.diff(steps, axis=0) < -self.tol):
                raise ProbabilityError(f"{where}: succ1_steps must be non-decreasing in j")
            if np.any(np.abs(steps[-1] - self.succ[1]) > self.tol):
                raise ProbabilityError(f"{where}: succ1_steps[k-1] must equal succ[1]")
        object.__setattr__(self, "succ1_steps", steps)

    @property
    def n_states(self) -> int:
        """Number S of non-terminal states."""
        return int(self.state_keys.shape[0])

    def index_of(self, keys: np.ndarray) -> np.ndarray:
        """Map state keys to state indices; raises UnknownStateError for unknown keys."""
        from helpseek_core.errors import UnknownStateError

        keys = np.asarray(keys, dtype=np.int64)
        idx = np.searchsorted(self.state_keys, keys)
        idx_c = np.minimum(idx, max(self.n_states - 1, 0))
        ok = (
            (idx < self.n_states) & (self.state_keys[idx_c] == keys)
            if self.n_states
            else (np.zeros(keys.shape, bool))
        )
        if not np.all(ok):
            bad = keys[~ok].ravel()[0]
            raise UnknownStateError(f"TabularModel: unknown state key {int(bad)}")
        return idx_c


@dataclass(frozen=True, eq=False)
class BudgetedSolution:
    """Exact hard-budget optimum over (t, s, c) for every c <= Cmax (docs/design.md §4).

    ``policy[t, s, c]`` is True when intervening is strictly better than proceeding at
    step t in state s with c budget units left (ties go to proceed).
    """

    policy: np.ndarray  # (H, S, C) bool
    value0: np.ndarray  # (S, C) float   success probability from (t=0, s, c)
    usage0: np.ndarray  # (S, C) float   expected interventions from (t=0, s, c)
    success: np.ndarray  # (C,) float   start-distribution success per budget
    usage: np.ndarray  # (C,) float   start-distribution interventions per budget
    values: np.ndarray | None = None  # (H+1, S, C) float   only when asked for (small MDPs)

    @property
    def cmax(self) -> int:
        """Largest budget solved for."""
        return int(self.policy.shape[2] - 1)


@dataclass(frozen=True, eq=False)
class LagrangianSolution:
    """Penalty-r optimum (the paper's solver); budget met in expectation.

    ``policy[t, s]`` is True when intervening beats proceeding by more than the penalty.
    """

    penalty: float  # r
    policy: np.ndarray  # (H, S) bool
    value0: np.ndarray  # (S,) float   success probability from t = 0 under the policy
    usage0: np.ndarray  # (S,) float   expected interventions from t = 0
    success: float  # start-distribution success
    usage: float  # start-distribution expected interventions
    budget: float | None = None  # the C the search targeted, if any
