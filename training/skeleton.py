"""The one training pipeline: every source, every representation, the same stages.

    source -> PRM -> model estimate -> exact DP -> labels -> helper -> evaluation -> artifact

:func:`train` runs the stages top to bottom into one output folder, built beside ``out`` and
renamed into place only when every stage succeeded (:mod:`training.staging`: a failed run
leaves no half-written folder). What differs between runs is plugged in:

- the **source** of steps (:mod:`training.source`): live collection from an environment, or a
  step log on disk;
- the **representation** (:class:`Representation`): features (``training.pipeline``) or text
  (``training.text_pipeline``) — how the PRM is fitted, how a state is scored for the model's
  leaves, how the helper is fitted on the label rows, which policies the evaluation runs and
  which files the artifact holds.

The rest is shared and written once here: the run folder and its ``config.json``, the stage
timer, the model estimate and the DP, the live evaluation (``training.evaluate.evaluate``) or,
without an environment, the offline evaluation (``training.offline_eval``), the manifest's
common fields (``git_revision`` included) and ``run/training.json``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.types import BudgetedSolution, StepLog, TabularModel
from training.evaluate import EvalConfig, PolicySet, evaluate
from training.phase2 import StateScorer, estimate, oracle_for, timeout_failure
from training.report import manifest_summary, write_report
from training.selfcheck import enforce_checks
from training.source import Steps, StepSource
from training.staging import staged_output

__all__ = ["Phase2", "Representation", "Run", "RunSettings", "git_revision", "train"]


def git_revision() -> str:
    """Return the source tree's git commit, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(eq=False)
class Run:
    """The run being built: its (staging) folder, stage timings and notes."""

    dir: Path  # the folder being written (renamed to the final ``out`` at the end)
    say: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _clock: float = field(default_factory=time.perf_counter)

    @property
    def run_dir(self) -> Path:
        """``DIR/run``: the step log, the PRM, comparators and ``training.json``."""
        return self.dir / "run"

    def lap(self, stage: str) -> None:
        """Record the time since the last lap under ``stage``."""
        now = time.perf_counter()
        self.timings[stage] = round(now - self._clock, 2)
        self.say(f"{stage} done in {self.timings[stage]:.1f}s")
        self._clock = now


@dataclass(frozen=True, eq=False)
class Phase2:
    """The estimated model and its exact budgeted DP."""

    model: TabularModel
    solution: BudgetedSolution
    timeout_failure: bool


@dataclass(frozen=True)
class RunSettings:
    """What the skeleton needs from a representation's config."""

    out: Path
    cmax: int
    n_min: int
    leaf: str
    timeout_failure: str
    evaluation: EvalConfig
    progress: bool
    torch_threads: int
    config: dict[str, Any]  # the resolved config, written to config.json and the manifest
    name: str  # "train" / "train-text": the log prefix


class Representation(Protocol):
    """Features or text: the stages that depend on what a state looks like."""

    kind: str  # the manifest's "kind"
    id_prefix: str  # artifact id prefix ("" for features, "text-embed-" ...)
    report_title: str

    def fit_prm(self, run: Run, steps: Steps) -> None:
        """Fit (and calibrate) the PRM; lap its stages."""

    def score_rows(self, log: StepLog) -> StateScorer | None:
        """Return the PRM as a leaf scorer of ``log``'s rows (None: Monte-Carlo leaves)."""

    def fit_helper(self, run: Run, steps: Steps, p2: Phase2) -> None:
        """Fit the helper (and comparators) on the DP's label rows; lap its stages."""

    def policies(self, run: Run, steps: Steps, p2: Phase2) -> PolicySet:
        """Return the policies of the live evaluation (helper, PRM, training log, comparators)."""

    def finish_metrics(self, metrics: dict[str, Any], run: Run, steps: Steps) -> None:
        """Add representation-specific entries to the live evaluation's metrics."""

    def offline(self, run: Run, steps: Steps, p2: Phase2) -> dict[str, Any] | None:
        """Run the offline evaluation (no environment); None if this representation has none."""

    def manifest(self, steps: Steps, p2: Phase2) -> dict[str, Any]:
        """Return the manifest's representation-specific fields."""

    def write(self, directory: Path, manifest: dict[str, Any]) -> None:
        """Write the artifact into ``directory`` and load it back (refuse an unloadable one)."""

    def training_info(self) -> dict[str, Any]:
        """Fit figures for ``run/training.json``."""


def train(settings: RunSettings, source: StepSource, rep: Representation) -> Path:
    """Run every stage into ``settings.out``; return the artifact directory."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    out = Path(settings.out)

    def say(msg: str) -> None:
        print(f"[helpseek {settings.name}] {msg}", flush=True)

    with staged_output(out, marker="config.json") as stage:
        run = Run(stage, say)
        run.run_dir.mkdir(parents=True)
        (stage / "config.json").write_text(json.dumps(settings.config, indent=2, default=str))
        steps = source.steps(run.run_dir, say)
        run.lap(source.stage)
        rep.fit_prm(run, steps)
        p2 = _phase2(settings, steps, rep.score_rows(steps.log), run)
        run.lap("model+dp")
        rep.fit_helper(run, steps, p2)
        metrics = _evaluate(settings, steps, p2, rep, run)
        manifest: dict[str, Any] = {
            "artifact_id": f"{rep.id_prefix}{steps.env.split(':')[0].lower()}-{uuid.uuid4().hex[:12]}",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_revision": git_revision(),
            "kind": rep.kind,
            "cmax": settings.cmax,
            "horizon": steps.horizon,
            "k": steps.k,
            "cost": steps.cost,
            "env": steps.env,
            "agent": steps.agent,
            "expert": steps.expert,
            "dp": {
                "success": p2.solution.success.tolist(),
                "usage": p2.solution.usage.tolist(),
                "states": p2.model.n_states,
                "timeout_failure": p2.timeout_failure,
            },
            "training_config": settings.config,
            "source": {
                "log": str(steps.log_dir) if source.stage != "collect" else "run/log",
                "held_out": steps.held_out,
            },
            "collection": {
                k: steps.manifest.get(k) for k in ("schema_version", "env", "agent", "expert")
            },
        }
        if metrics is not None:
            manifest["evaluation"] = metrics
        rep_fields = rep.manifest(steps, p2)
        manifest["dp"].update(rep_fields.pop("dp", {}))
        manifest.update(rep_fields)
        rep.write(stage, manifest)
        run.lap("export")
        info = {
            "timings_s": run.timings,
            "notes": run.notes,
            **rep.training_info(),
            "dp_success": p2.solution.success.tolist(),
        }
        (run.run_dir / "training.json").write_text(json.dumps(info, indent=2, default=str))
    say(f"artifact written to {out} (report: {out / 'report' / 'report.md'})")
    if metrics is not None and "self_checks" in metrics:  # after export: the report stays
        enforce_checks(
            metrics, out / "report" / "report.md", allow=settings.evaluation.allow_failed_checks
        )
    return out


def _phase2(settings: RunSettings, steps: Steps, scorer: StateScorer | None, run: Run) -> Phase2:
    tf = timeout_failure(settings.timeout_failure, steps.horizon, steps.log.t, steps.steps_left)
    if tf:
        run.notes.append("model: time-outs counted as failure terminals (per-task step limits)")
    model = estimate(
        steps.log,
        None,
        steps.horizon,
        steps.k,
        steps.cost,
        settings.n_min,
        settings.leaf,
        tf,
        score_rows=scorer,
    )
    return Phase2(model, solve_budgeted(model, settings.cmax), tf)


def _evaluate(
    settings: RunSettings, steps: Steps, p2: Phase2, rep: Representation, run: Run
) -> dict[str, Any] | None:
    """Live evaluation with an environment, else the offline one; the manifest's summary."""
    ev = settings.evaluation
    if steps.adapter is None or ev.episodes <= 0:
        if steps.adapter is not None:
            return None
        offline = rep.offline(run, steps, p2)
        if offline is not None:
            run.lap("offline evaluation")
        return offline
    ev = replace(ev, progress=settings.progress)
    seeds = sorted(steps.train_seeds)
    if seeds and seeds == list(
        range(seeds[0], seeds[0] + len(seeds))
    ):  # calibrate / check on these
        ev = replace(ev, train_seed_start=seeds[0], train_n_tasks=len(seeds))
    ps = rep.policies(run, steps, p2)
    ps.notes[:0] = run.notes
    cmax_eval = max(settings.cmax, *ev.budgets)
    ps.oracle_model, ps.oracle, ps.oracle_kind = oracle_for(
        steps.adapter, steps.k, steps.cost, cmax_eval, (p2.model, p2.solution)
    )
    metrics = evaluate(steps.adapter, ps, ev, cmax=settings.cmax)
    # the exact oracle's prediction per budget is evaluate()'s "oracle_prediction"
    metrics["dp_predicted"] = {
        "estimated_model_success": p2.solution.success.tolist(),
        "estimated_model_usage": p2.solution.usage.tolist(),
    }
    rep.finish_metrics(metrics, run, steps)
    write_report(metrics, run.dir / "report", title=rep.report_title)
    run.lap("evaluate")
    return manifest_summary(metrics)
