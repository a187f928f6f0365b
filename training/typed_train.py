"""``helpseek train-typed``: the pipeline with several intervention types, end to end.

    collect (random interventions of every type) -> typed model -> typed DP -> labels
    -> one multi-class helper -> live evaluation at budget vectors -> typed artifact

Why a stage of its own beside ``helpseek train`` (:mod:`training.skeleton`): every record the
skeleton passes between stages is one-budget (``BudgetedSolution``, ``Helper``, a one-budget
``PolicySet`` and its report), and its representations (features, text) each implement those.
The typed stages reuse what does not depend on the budget's shape — the episode runner, the
per-episode seeds, steps left and the time-out rule, decision points, the staged output
folder, the artifact writer — and put the typed versions beside them
(:mod:`training.typed_phase`, :mod:`training.typed_eval`). One type with the defaults is not
routed here: ``helpseek train`` stays exactly as it was.

Leaves of the estimated model are Monte-Carlo (the log's success rates): the PRM of the
one-type pipeline scores (state, intervene) for one expert only.

The output folder is a typed artifact (``kind: "typed"``, manifest ``types``) plus ``report/``
(``report.json``, ``report.md``, ``success_vs_cost.png``) and ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.helper import HELPER_FILE, FeatureStats
from helpseek_core.typed import solve_typed
from helpseek_core.typed_helper import TypedHelper
from training.config import DEFAULT_P_GRID, parse_seeds
from training.envs import make_env
from training.helper_train import HelperConfig, decision_points
from training.phase2 import task_steps_left, timeout_failure
from training.staging import staged_output
from training.typed_eval import (
    calibrate_thresholds,
    helper_policy,
    one_type_policy,
    oracle_policy,
    run_typed_cell,
    threshold_policy,
    type_gains,
    typed_cell_metrics,
)
from training.typed_phase import (
    TypeSpec,
    collect_typed,
    estimate_typed_model,
    exact_typed_model,
    fit_typed_helper,
    one_type_model,
    parse_type,
)
from training.typed_report import write_typed_report

__all__ = ["TypedTrainConfig", "add_arguments", "from_args", "main", "parse_budget_vector"]

DEFAULT_TYPES = ("hint:k=1,cost=1,cmax=4,expert_eps=0.3", "takeover:k=3,cost=1,cmax=2")


def parse_budget_vector(text: str, m: int) -> tuple[int, ...]:
    """``"2/1"`` -> (2, 1); ValueError naming the vector when it is not m integers >= 0."""
    try:
        vec = tuple(int(v) for v in text.strip().split("/"))
    except ValueError as exc:
        raise ValueError(f"--budgets: {text!r} is not integers joined by '/'") from exc
    if len(vec) != m or any(v < 0 for v in vec):
        raise ValueError(f"--budgets: {text!r} needs {m} budgets >= 0 (one per --type)")
    return vec


@dataclass(frozen=True)
class TypedTrainConfig:
    """One ``helpseek train-typed`` run."""

    out: Path
    """Run / artifact directory (written all at once: a failed run leaves none)."""
    env: str = "taxi"
    """Environment spec (``make_env`` grammar)."""
    types: tuple[str, ...] = DEFAULT_TYPES
    """Intervention types, ``NAME:k=INT,cost=INT,cmax=INT,expert_eps=FLOAT`` (1 to 3)."""
    train_seeds: tuple[int, ...] = tuple(range(100))
    """Task seeds collected for training."""
    episodes_per_seed: int = 22
    """Collection rollouts per seed (p cycles over ``p_grid``)."""
    p_grid: tuple[float, ...] = DEFAULT_P_GRID
    """Random-intervention probabilities."""
    root_seed: int = 0
    """Root of the collection's episode RNGs."""
    workers: int = 2
    """Collection processes."""
    n_min: int = 1
    """A (state, action) pair seen fewer times is a Monte-Carlo leaf."""
    timeout_failure: str = "auto"
    """Time-outs as failure terminals: yes, no, auto (per-task step limits)."""
    helper: HelperConfig = field(default_factory=lambda: HelperConfig(epochs=30))
    """Helper MLP settings (shared by the typed and the one-type helpers)."""
    budgets: tuple[str, ...] = ("1/1", "2/1", "4/1", "2/2")
    """Budget vectors evaluated (one budget per type, joined by '/')."""
    episodes: int = 1000
    """Live episodes per (policy, budget vector)."""
    seed_start: int = 1_000_000
    """First held-out task seed of the evaluation."""
    n_tasks: int = 1000
    """Distinct held-out task seeds."""
    eval_root_seed: int = 20_250_204
    """Root of the evaluation's noise and dynamics seeds (same for every policy)."""
    train_seed_eval: bool = False
    """Also evaluate on the training seeds (where an estimated oracle knows the states)."""
    progress: bool = False
    """Progress output."""

    def __post_init__(self) -> None:
        specs = self.specs()
        if not 1 <= len(specs) <= 3:
            raise ValueError(f"train-typed: need 1 to 3 --type, got {len(specs)}")
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("train-typed: --type names must be distinct")
        for b in self.budgets:
            parse_budget_vector(b, len(specs))

    def specs(self) -> list[TypeSpec]:
        """Return the parsed types."""
        return [parse_type(t) for t in self.types]

    def budget_vectors(self) -> list[tuple[int, ...]]:
        """Return the parsed budget vectors."""
        return [parse_budget_vector(b, len(self.types)) for b in self.budgets]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config."""
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def main(cfg: TypedTrainConfig) -> Path:
    """Run every typed stage into ``cfg.out``; return the artifact directory."""
    import torch

    torch.set_num_threads(1)
    out = Path(cfg.out)
    specs = cfg.specs()
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(now - clock[0], 2)
        print(f"[helpseek train-typed] {stage} done in {timings[stage]:.1f}s", flush=True)
        clock[0] = now

    with staged_output(out, marker="config.json") as stage:
        (stage / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
        adapter = make_env(cfg.env)
        log = collect_typed(
            adapter.spec,
            specs,
            cfg.train_seeds,
            cfg.episodes_per_seed,
            cfg.p_grid,
            cfg.root_seed,
            cfg.workers,
        )
        lap("collect")
        horizon, steps_left = task_steps_left(log, adapter)
        tf = timeout_failure(cfg.timeout_failure, horizon, log.t, steps_left)
        model = estimate_typed_model(log, horizon, specs, cfg.n_min, tf)
        cmax = [s.cmax for s in specs]
        sol = solve_typed(model, cmax)
        lap("model+dp")
        stats = FeatureStats.fit(log.features)
        helper, fit = fit_typed_helper(log, steps_left, model, sol, specs, cfg.helper, stats)
        singles = []
        for i, s in enumerate(specs if len(specs) > 1 else []):
            one = one_type_model(model, i)
            h1, f1 = fit_typed_helper(
                log, steps_left, one, solve_typed(one, [s.cmax]), [s], cfg.helper, stats
            )
            singles.append(h1)
            fit[f"one_type:{s.name}"] = f1  # type: ignore[assignment]
        lap("helpers")
        exact = exact_typed_model(adapter, specs)
        o_model = exact if exact is not None else model
        o_sol = solve_typed(o_model, cmax) if exact is not None else sol
        metrics = _evaluate(
            cfg,
            adapter,
            specs,
            helper,
            singles,
            model,
            sol,
            o_model,
            o_sol,
            log,
            steps_left,
            cfg.seed_start,
            cfg.n_tasks,
        )
        metrics["oracle_kind"] = "exact" if exact is not None else "estimated"
        metrics["dp_predicted"] = {"success": o_sol.success.tolist(), "usage": o_sol.usage.tolist()}
        if cfg.train_seed_eval:
            seeds = sorted(cfg.train_seeds)
            metrics["train_seeds"] = _evaluate(
                cfg,
                adapter,
                specs,
                helper,
                singles,
                model,
                sol,
                model,
                sol,
                log,
                steps_left,
                seeds[0],
                len(seeds),
            )
        metrics.update(
            fit=fit,
            log={
                "rows": len(log),
                "episodes": int(np.unique(log.episode_id).size),
                "timeout_failure": tf,
                "states": model.n_states,
            },
        )
        lap("evaluate")
        write_typed_report(
            metrics, stage / "report", title=f"Several intervention types: {adapter.spec}"
        )
        manifest = {
            "artifact_id": f"typed-{adapter.spec.split(':')[0].lower()}-{uuid.uuid4().hex[:12]}",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "kind": "typed",
            "feature_schema": {"names": list(adapter.feature_names), "dim": log.feature_dim},
            "types": [s.intervention_type.to_dict() for s in specs],
            "types_played": [s.to_text() for s in specs],
            "cmax": specs[0].cmax,
            "horizon": horizon,
            "k": specs[0].k,
            "cost": specs[0].cost,
            "env": adapter.spec,
            "agent": adapter.agent,
            "expert": adapter.expert,
            "dp": {
                "success": sol.success.tolist(),
                "usage": sol.usage.tolist(),
                "states": model.n_states,
                "timeout_failure": tf,
            },
            "helper": {"fit": fit},
            "training_config": cfg.to_dict(),
            "timings_s": timings,
            "evaluation": {"summary": metrics["summary"], "oracle_kind": metrics["oracle_kind"]},
        }
        write_artifact(
            stage, manifest, {HELPER_FILE: {**helper.mlp.to_arrays(), **stats.to_arrays()}}
        )
        TypedHelper.from_artifact(load_artifact(stage))  # refuse an artifact that won't load
    print(
        f"[helpseek train-typed] artifact written to {out} (report: {out / 'report' / 'report.md'})"
    )
    return out


def _evaluate(
    cfg: TypedTrainConfig,
    adapter: Any,
    specs: list[TypeSpec],
    helper: TypedHelper,
    singles: list[TypedHelper],
    model: Any,
    sol: Any,
    o_model: Any,
    o_sol: Any,
    log: Any,
    steps_left: np.ndarray,
    seed_start: int,
    n_tasks: int,
) -> dict[str, Any]:
    """Every policy at every budget vector (module docstring of :mod:`training.typed_eval`)."""
    rungs = [s.rung for s in specs]
    costs = [s.cost for s in specs]
    args = (rungs, cfg.episodes, seed_start, n_tasks, cfg.eval_root_seed)

    def cell(decide: Any, b: tuple[int, ...]) -> dict[str, Any]:
        return typed_cell_metrics(run_typed_cell(adapter, decide, b, *args), b, costs)

    points = decision_points(log, model.parts[0], steps_left)
    gains = type_gains(model)
    g_pts = gains[points.t, model.parts[0].index_of(points.state_key)]
    rows_per_episode = len(log) / max(int(np.unique(log.episode_id).size), 1)
    cells: dict[str, list[dict[str, Any]]] = {}
    zero = tuple(0 for _ in specs)
    never = cell(0.0, zero)
    for b in cfg.budget_vectors():
        top = tuple(min(v, s.cmax) for v, s in zip(b, specs, strict=True))
        cells.setdefault("typed_oracle", []).append(cell(oracle_policy(o_model, o_sol), b))
        h = cell(helper_policy(helper), b)
        cells.setdefault("typed_helper", []).append(h)
        for i, (s, h1) in enumerate(zip(specs, singles, strict=False)):
            only = tuple(v if j == i else 0 for j, v in enumerate(b))
            cells.setdefault(f"one_type:{s.name}", []).append(
                {**cell(one_type_policy(h1, i), only), "budgets": list(b)}
            )
        rate = np.asarray(sol.usage[(slice(None), *top)]) / rows_per_episode
        tau = calibrate_thresholds(g_pts, points.visits, rate)
        cells.setdefault("threshold", []).append(
            {**cell(threshold_policy(model, gains, tau), b), "thresholds": tau}
        )
        p = min(1.0, h["request_rate"])
        cells.setdefault("random", []).append({**cell(p, b), "p": p})
    return {"never": never, "policies": cells, "summary": _summary(cells, specs)}


def _summary(cells: dict[str, list[dict[str, Any]]], specs: list[TypeSpec]) -> list[dict[str, Any]]:
    """Per budget vector: helper / oracle ratio and helper vs the better one-type helper."""
    out = []
    for j, h in enumerate(cells["typed_helper"]):
        o = cells["typed_oracle"][j]
        ones = [cells[f"one_type:{s.name}"][j] for s in specs if f"one_type:{s.name}" in cells]
        best = max(ones, key=lambda c: c["success"]) if ones else None
        ratio = h["success"] / o["success"] if o["success"] > 0 else float("nan")
        out.append(
            {
                "budgets": h["budgets"],
                "helper": h["success"],
                "helper_ci": h["ci"],
                "oracle": o["success"],
                "oracle_ci": o["ci"],
                "oracle_ratio": ratio,
                "meets_095": bool(ratio >= 0.95),
                "best_one_type": None if best is None else best["success"],
                "best_one_type_ci": None if best is None else best["ci"],
                "beats_one_type": None if best is None else bool(h["ci"][1] >= best["success"]),
            }
        )
    return out


# ---- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek train-typed``."""
    d = TypedTrainConfig(out=Path("."))
    parser.add_argument("--out", type=Path, required=True, help="run / artifact directory")
    parser.add_argument("--env", default=d.env, help=f"environment spec (default: {d.env})")
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="NAME:k=..,cost=..,cmax=..,expert_eps=..",
        help=f"an intervention type, repeat for several (default: {' '.join(d.types)})",
    )
    parser.add_argument("--train-seeds", type=parse_seeds, help="training task seeds (0-99)")
    parser.add_argument("--episodes-per-seed", type=int, default=d.episodes_per_seed)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--helper-epochs", type=int, default=d.helper.epochs)
    parser.add_argument("--budgets", help="budget vectors, e.g. 1/1,2/1,4/1,2/2")
    parser.add_argument("--episodes", type=int, default=d.episodes, help="episodes per cell")
    parser.add_argument("--eval-tasks", type=int, default=d.n_tasks, help="held-out task seeds")
    parser.add_argument("--train-seed-eval", action="store_true", help=TypedTrainConfig.__doc__)
    parser.add_argument("--timeout-failure", default=d.timeout_failure)
    parser.add_argument(
        "--n-min", type=int, default=d.n_min, help="pairs seen fewer times are leaves"
    )


def from_args(ns: argparse.Namespace) -> TypedTrainConfig:
    """Build the config from parsed ``helpseek train-typed`` arguments."""
    kw: dict[str, Any] = {
        "out": ns.out,
        "env": ns.env,
        "episodes_per_seed": ns.episodes_per_seed,
        "workers": ns.workers,
        "episodes": ns.episodes,
        "n_tasks": ns.eval_tasks,
        "train_seed_eval": ns.train_seed_eval,
        "timeout_failure": ns.timeout_failure,
        "n_min": ns.n_min,
        "helper": HelperConfig(epochs=ns.helper_epochs),
    }
    if ns.types:
        kw["types"] = tuple(ns.types)
    if ns.train_seeds:
        kw["train_seeds"] = tuple(ns.train_seeds)
    if ns.budgets:
        kw["budgets"] = tuple(b for b in ns.budgets.split(",") if b)
    return TypedTrainConfig(**kw)
