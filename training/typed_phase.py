"""Several intervention types in training: Phase I collection, Phase II model and DP, Phase III helper.

The one-type stages of :mod:`training.skeleton` carry one budget (a ``BudgetedSolution``, a
``Helper``, a one-budget ``PolicySet``); the typed stages carry a budget per type, so they sit
beside them and reuse every piece that does not depend on the budget's shape: the one episode
runner (:func:`training.envs.run_episode` with ``rungs``), the per-episode seeds, the step-log
records, each row's steps left and the time-out rule of :mod:`training.phase2`, the decision
points of :mod:`training.helper_train`, and core's typed DP (:mod:`helpseek_core.typed`).

A type is declared by :func:`parse_type` (the ``--type`` grammar)::

    NAME:k=INT,cost=INT,cmax=INT,expert_eps=FLOAT      e.g.  hint:k=1,cost=1,cmax=4,expert_eps=0.3

``expert_eps``: each of the type's expert steps is a uniform random action with this
probability (a noisier, cheaper expert); 0 = the exact expert.

Rows of the typed helper: every logged (t, s) known to the model x every budget vector c <= the
Cmax vector with at least one affordable type; label = the typed DP's action (0 proceed,
i = type i); input = :func:`helpseek_core.typed_helper.encode_typed_inputs`; weight = visits **
``visit_power`` x a per-class factor (largest class weight / class weight) ** ``class_balance``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from helpseek_core.errors import ShapeError
from helpseek_core.helper import FeatureStats
from helpseek_core.mlp import MLP
from helpseek_core.typed import TypedModel, TypedSolution, estimate_typed, label_typed
from helpseek_core.typed_helper import InterventionType, TypedHelper, encode_typed_inputs
from helpseek_core.types import StepLog
from training.envs import EnvAdapter, episode_rng, episodes_to_steplog, make_env, run_episode
from training.envs.runner import N_RANDOM_ACTIONS, Rung
from training.helper_train import DecisionPoints, HelperConfig, decision_points

__all__ = [
    "TypeSpec",
    "TypedRows",
    "collect_typed",
    "exact_typed_model",
    "fit_typed_helper",
    "one_type_model",
    "parse_type",
    "typed_rows",
]

_TYPE_KEYS = {"k": int, "cost": int, "cmax": int, "expert_eps": float}


@dataclass(frozen=True)
class TypeSpec:
    """One intervention type of a run: name, k, cost, Cmax and who acts (expert noise)."""

    name: str
    k: int = 1
    cost: int = 1
    cmax: int = 5
    expert_eps: float = 0.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"--type: name must be letters, digits, - or _, got {self.name!r}")
        if self.k < 1 or self.cost < 1 or self.cmax < 0 or not 0.0 <= self.expert_eps <= 1.0:
            raise ValueError(
                f"--type {self.name}: need k >= 1, cost >= 1, cmax >= 0, 0 <= expert_eps <= 1"
            )

    @property
    def rung(self) -> Rung:
        """How the episode runner plays this type."""
        return Rung(self.k, self.cost, self.expert_eps)

    @property
    def intervention_type(self) -> InterventionType:
        """The artifact's record of this type."""
        return InterventionType(self.name, self.k, self.cost, self.cmax)

    def to_text(self) -> str:
        """Return the ``--type`` text that parses back to this spec."""
        return f"{self.name}:k={self.k},cost={self.cost},cmax={self.cmax},expert_eps={self.expert_eps:g}"


def parse_type(text: str) -> TypeSpec:
    """Parse ``NAME[:key=value,...]`` (module docstring); ValueError naming the bad part."""
    name, _, rest = text.strip().partition(":")
    kw: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in _TYPE_KEYS:
            raise ValueError(f"--type {text!r}: bad item {item!r} (keys: {', '.join(_TYPE_KEYS)})")
        try:
            kw[key] = _TYPE_KEYS[key](value)
        except ValueError as exc:
            raise ValueError(f"--type {text!r}: {key}={value!r} is not a number") from exc
    return TypeSpec(name, **kw)


# ---- Phase I ---------------------------------------------------------------------------------


def _collect_seed(args: tuple[str, list[TypeSpec], int, int, int, list[float], int]) -> StepLog:
    spec, types, seed, first_episode, episodes, p_grid, root_seed = args
    adapter = make_env(spec)
    rungs = [t.rung for t in types]
    eps = []
    for j in range(episodes):
        rng, dyn = episode_rng(root_seed, seed, j)
        eps.append(
            run_episode(
                adapter,
                seed,
                p_grid[j % len(p_grid)],
                rng=rng,
                rungs=rungs,
                dynamics_seed=dyn,
                episode_id=first_episode + j,
            )
        )
    return episodes_to_steplog(eps, len(adapter.feature_names))


def collect_typed(
    spec: str,
    types: Sequence[TypeSpec],
    seeds: Sequence[int],
    episodes_per_seed: int,
    p_grid: Sequence[float],
    root_seed: int = 0,
    workers: int = 1,
    first_index: int = 0,
) -> StepLog:
    """Phase I with types: random interventions (type uniform among the affordable ones).

    Rollout j of seed s uses probability ``p_grid[j % len]`` and the episode RNG
    ``episode_rng(root_seed, s, j)`` (as ``helpseek collect``), so the rows do not depend on
    ``workers``. Episode ids are (first_index + position) x episodes_per_seed + j.
    """
    jobs = [
        (
            spec,
            list(types),
            int(s),
            (first_index + i) * episodes_per_seed,
            episodes_per_seed,
            list(p_grid),
            root_seed,
        )
        for i, s in enumerate(seeds)
    ]
    if workers > 1 and len(jobs) > 1:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            logs = pool.map(_collect_seed, jobs)
    else:
        logs = [_collect_seed(j) for j in jobs]
    return StepLog.concat(logs)


# ---- Phase II --------------------------------------------------------------------------------


def exact_typed_model(adapter: EnvAdapter, types: Sequence[TypeSpec]) -> TypedModel | None:
    """Build the exact typed model where the adapter has ``exact_arrays()`` (toy_text), else None.

    A noisy type's expert policy is (1 - eps) x expert + eps x uniform over the actions, as
    the runner plays it.
    """
    exact = getattr(adapter, "exact_arrays", None)
    if not callable(exact):
        return None
    from helpseek_core.exact import model_from_policies

    arr = exact()
    n_a = arr.trans.shape[0]
    n_random = int(getattr(adapter, "n_actions", N_RANDOM_ACTIONS))
    uniform = np.zeros(n_a)
    uniform[:n_random] = 1.0 / n_random
    parts = []
    for t in types:
        pol = (1.0 - t.expert_eps) * arr.expert_policy + t.expert_eps * uniform[None, :]
        parts.append(
            model_from_policies(
                arr.trans,
                arr.succ,
                arr.fail,
                arr.weak_policy,
                pol,
                arr.start,
                horizon=arr.horizon,
                k=t.k,
                cost=t.cost,
                state_keys=arr.state_keys,
            )
        )
    return TypedModel(tuple(parts), tuple(t.name for t in types))


def estimate_typed_model(
    log: StepLog, horizon: int, types: Sequence[TypeSpec], n_min: int, timeout_failure: bool
) -> TypedModel:
    """Count the log into the typed model (Monte-Carlo leaves; time-outs as failures if asked)."""
    if timeout_failure:
        log = replace(log, truncated=np.zeros(len(log), bool))
    return estimate_typed(
        log,
        horizon,
        [t.k for t in types],
        [t.cost for t in types],
        [t.name for t in types],
        n_min=n_min,
    )


def one_type_model(model: TypedModel, i: int) -> TypedModel:
    """Type i alone (its part of the typed model): what its one-type helper is trained on."""
    return TypedModel((model.parts[i],), (model.names[i],))


# ---- Phase III -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TypedRows:
    """Training rows of the typed helper."""

    x: np.ndarray  # (M, F + 2m + 1) float32   encode_typed_inputs(...)
    y: np.ndarray  # (M,) int64   0 proceed, i = type i
    w: np.ndarray  # (M,) float32   mean 1


def typed_rows(
    points: DecisionPoints,
    model: TypedModel,
    solution: TypedSolution,
    stats: FeatureStats,
    types: Sequence[InterventionType],
    cfg: HelperConfig,
) -> TypedRows:
    """(t, s) x every budget vector with an affordable type, labelled by the typed DP."""
    labels = label_typed(solution, model, points.t, points.state_key)  # (P, C1+1, ..)
    grid = np.stack(np.meshgrid(*[np.arange(c + 1) for c in solution.cmax], indexing="ij"), -1)
    vectors = grid.reshape(-1, len(types))  # (G, m), C-order like labels' budget axes
    useful = np.any(vectors >= np.array([t.cost for t in types])[None, :], axis=1)
    if not useful.any():
        raise ShapeError("typed_rows: no budget vector affords any type: nothing to learn")
    flat = labels.reshape(labels.shape[0], -1)[:, useful]  # (P, G')
    vectors = vectors[useful]
    p, g = flat.shape
    feats = np.repeat(points.features, g, axis=0)
    x = encode_typed_inputs(
        stats,
        feats,
        np.tile(vectors, (p, 1)),
        np.repeat(points.steps_left, g),
        types,
        model.horizon,
    )
    y = flat.reshape(-1).astype(np.int64)
    w = np.repeat(points.visits.astype(np.float64) ** cfg.visit_power, g)
    mass = np.bincount(y, weights=w, minlength=len(types) + 1)
    present = mass > 0
    factor = np.ones_like(mass)
    factor[present] = (mass[present].max() / mass[present]) ** cfg.class_balance
    w = w * factor[y]
    return TypedRows(x, y, (w / w.mean()).astype(np.float32))


def fit_typed_helper(
    log: StepLog,
    steps_left: np.ndarray,
    model: TypedModel,
    solution: TypedSolution,
    types: Sequence[TypeSpec],
    cfg: HelperConfig,
    stats: FeatureStats | None = None,
    progress: bool = False,
) -> tuple[TypedHelper, dict[str, float]]:
    """Label the logged decision points, fit the multi-class MLP; (helper, fit figures)."""
    from training.mlp import fit_mlp_classes

    itypes = tuple(t.intervention_type for t in types)
    stats = stats or FeatureStats.fit(log.features)
    points = decision_points(log, model.parts[0], steps_left)
    rows = typed_rows(points, model, solution, stats, itypes, cfg)
    mlp = fit_mlp_classes(
        rows.x,
        rows.y,
        len(types) + 1,
        rows.w,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=cfg.seed,
        progress=progress,
    )
    return TypedHelper(mlp, stats, itypes, model.horizon), row_agreement(mlp, rows)


def row_agreement(mlp: MLP, rows: TypedRows) -> dict[str, float]:
    """Weighted agreement of the arg-max action with the labels, and per-class recall."""
    pred = np.argmax(mlp.forward(rows.x), axis=1)
    w = rows.w.astype(np.float64)
    out = {"accuracy": float(w[pred == rows.y].sum() / w.sum()), "rows": int(rows.y.shape[0])}
    for c in range(mlp.outputs):
        sel = rows.y == c
        out[f"recall_{c}"] = (
            float(w[sel & (pred == c)].sum() / w[sel].sum()) if sel.any() else float("nan")
        )
    return out
