"""Phase II: the tabular model a step log gives, the DP oracle, and each row's steps left.

:func:`estimate` counts the log into a :class:`~helpseek_core.types.TabularModel` whose rarely
seen pairs are valued by a PRM (any representation: a scorer maps the first logged visit of
each state to its two success probabilities); :func:`oracle_for` gives the evaluation's DP
oracle (the exact model where the environment has one, else the estimated one);
:func:`task_steps_left` reads each task's own step limit from the environment and
:func:`timeout_failure` decides whether time-outs become failure terminals. The budgeted DP
itself is :func:`helpseek_core.budgeted.solve_budgeted`; the occupancy figures of its policy are
:mod:`helpseek_core.occupancy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.model import estimate_model, model_state_keys
from helpseek_core.prm import MLPPRM, TabularPRM
from helpseek_core.types import BudgetedSolution, StepLog, TabularModel
from training.envs import EnvAdapter

__all__ = [
    "StateScorer",
    "estimate",
    "leaf_values",
    "oracle_for",
    "steps_left_from_limits",
    "task_steps_left",
    "timeout_failure",
]

StateScorer = Callable[[np.ndarray], np.ndarray]
"""Log row indices (n,) -> (n, 2) success probabilities of proceed / intervene there."""


def leaf_values(log: StepLog, score_rows: StateScorer) -> np.ndarray:
    """(S, 2) leaf values aligned to :func:`~helpseek_core.model.model_state_keys`.

    Each logged state is scored by ``score_rows`` on its first logged visit; states logged
    only as next states keep the shrunk tabular PRM's value (they have no features or text).
    """
    keys = model_state_keys(log)
    leaves = TabularPRM.fit(log).score_keys(keys)
    uk, first = np.unique(log.state_key, return_index=True)
    leaves[np.searchsorted(keys, uk)] = score_rows(first)
    return leaves


def estimate(
    log: StepLog,
    prm: MLPPRM | None,
    horizon: int,
    k: int,
    cost: int,
    n_min: int = 1,
    leaf: str = "prm",
    timeout_failure: bool = False,
    score_rows: StateScorer | None = None,
) -> TabularModel:
    """Estimate the tabular model from the log with PRM-valued leaves.

    ``leaf``: 'prm' (the PRM on the state's first logged visit: ``score_rows`` if given, else
    the MLP PRM on the features; the shrunk tabular PRM for states logged only as next
    states) or 'monte_carlo' (the log's success rates, core's default). ``timeout_failure``: a
    time-out row ends in the failure terminal (per-task step limits that one global horizon
    cannot express) instead of being an ordinary transition.
    """
    if timeout_failure:
        log = replace(log, truncated=np.zeros(len(log), bool))
    if leaf not in ("prm", "monte_carlo"):
        raise ValueError(f"ModelConfig.leaf must be 'prm' or 'monte_carlo', got {leaf!r}")
    if score_rows is None and prm is not None:
        feats = log.features
        score_rows = lambda rows: prm.score(feats[rows])  # noqa: E731
    leaves = None
    if leaf == "prm" and score_rows is not None:
        leaves = leaf_values(log, score_rows)
    return estimate_model(log, horizon=horizon, k=k, cost=cost, n_min=n_min, leaf_values=leaves)


def timeout_failure(setting: str, horizon: int, t: np.ndarray, steps_left: np.ndarray) -> bool:
    """Whether time-outs are failure terminals: 'yes', 'no' or 'auto' (per-task step limits)."""
    if setting not in ("yes", "no", "auto"):
        raise ValueError(f"ModelConfig.timeout_failure must be yes, no or auto, got {setting!r}")
    per_task = bool(np.any((steps_left + t) != horizon))
    return setting == "yes" or (setting == "auto" and per_task)


def oracle_for(
    adapter: EnvAdapter,
    k: int,
    cost: int,
    cmax: int,
    estimated: tuple[TabularModel, BudgetedSolution] | None,
) -> tuple[TabularModel | None, BudgetedSolution | None, str]:
    """Build the DP oracle: the exact model where the adapter has one, else the estimated one."""
    exact = getattr(adapter, "exact_arrays", None)
    if callable(exact):
        from helpseek_core.exact import model_from_policies

        arr = exact()
        model = model_from_policies(
            arr.trans,
            arr.succ,
            arr.fail,
            arr.weak_policy,
            arr.expert_policy,
            arr.start,
            horizon=arr.horizon,
            k=k,
            cost=cost,
            state_keys=arr.state_keys,
        )
        return model, solve_budgeted(model, cmax), "exact"
    if estimated is not None:
        model, _ = estimated
        return model, solve_budgeted(model, cmax), "estimated"
    return None, None, "none"


def task_steps_left(log: StepLog, adapter: EnvAdapter) -> tuple[int, np.ndarray]:
    """(model horizon, (N,) steps left per row): each task's own step limit minus t.

    The step limit can differ per task (BabyAI: twice the bot's length on that seed), so it
    is read from the adapter after resetting it to each logged task; the model horizon is the
    largest limit (or the longest logged episode, if longer).
    """
    tasks = np.unique(log.task_id)
    limits = np.empty(tasks.shape[0], np.int64)
    for i, task in enumerate(tasks):
        adapter.reset(int(task))
        limits[i] = adapter.horizon
    return steps_left_from_limits(log, tasks, limits)


def steps_left_from_limits(
    log: StepLog, tasks: np.ndarray, limits: np.ndarray
) -> tuple[int, np.ndarray]:
    """(model horizon, (N,) steps left) from each task's step limit (``tasks`` sorted)."""
    per_row = np.asarray(limits, np.int64)[np.searchsorted(tasks, log.task_id)]
    longest = int((log.t.astype(np.int64) + log.duration).max())
    return max(int(np.max(limits)), longest), per_row - log.t.astype(np.int64)
