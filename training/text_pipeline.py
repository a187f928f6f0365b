"""``helpseek train-text``: the method on text states, into a ``kind: "text"`` artifact.

The stages are :func:`training.skeleton.train`'s (the same as ``helpseek train``); this module is
the *text* representation:

    collect (with the step log's ``text`` column) -> text PRM (helpseek_text, on the log texts)
    -> tabular model with text-PRM leaves -> exact budgeted DP -> the label rows
    (``helper_train.label_table``) -> text helper (budget and steps left written into the
    prompt) -> live evaluation (``training.evaluate.evaluate``, the text helper as the helper)
    -> artifact

Output directory (``--out DIR``)::

    DIR/manifest.json, text_model.json, text_prm.npz, text_helper.npz   the artifact
    DIR/config.json          resolved configuration
    DIR/run/log/             Phase I step log with texts
    DIR/run/training.json    timings, PRM calibration, helper fit, DP figures
    DIR/report/              live evaluation (only with ``--eval-episodes N > 0``)

The base model is not copied into the artifact: it comes from its PyPI package (the text
model JSON records the package version; loading refuses another version).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.types import StepLog
from helpseek_text import (
    HeadConfig,
    HelperExamples,
    PRMExamples,
    TextModelConfig,
    TextScorer,
    load_scorer,
    save_text_model,
    train_text_model,
)
from helpseek_text.encoders import Encoder, build_encoder
from training.config import CollectConfig, add_dataclass_arguments, from_namespace
from training.envs import EnvAdapter
from training.evaluate import EvalConfig, PolicySet
from training.helper_train import decision_points, label_table
from training.phase2 import StateScorer
from training.prm import calibration
from training.skeleton import Phase2, Run, RunSettings, train
from training.source import LiveSource, Steps
from training.steplog_io import read_steplog

__all__ = [
    "MemoEncoder",
    "TextHelperPolicy",
    "TextRepresentation",
    "TextTrainConfig",
    "add_arguments",
    "from_args",
    "main",
]


@dataclass(frozen=True)
class TextTrainConfig:
    """One ``helpseek train-text`` run."""

    out: Path
    """Run / artifact directory (written all at once: a failed run leaves none)."""
    env: str = "taxi"
    """Environment spec (``make_env`` grammar)."""
    backend: Literal["embed", "lm"] = "embed"
    """Text encoder: ``embed`` (MiniLM, fast) or ``lm`` (SmolLM2-135M); ``vllm`` serves an
    ``lm``-trained artifact on a GPU (train with ``lm``)."""
    cmax: int = 3
    """Largest budget the helper is trained for."""
    k: int = 1
    """Env steps per intervention."""
    cost: int = 1
    """Budget units per intervention."""
    train_seeds: tuple[int, ...] = tuple(range(40))
    """Task seeds collected for training."""
    test_seeds: tuple[int, ...] = tuple(range(10_000, 10_010))
    """Held-out collection seeds (PRM calibration)."""
    episodes_per_seed: int = 11
    """Collection rollouts per seed (p cycles over the 0.0..1.0 grid)."""
    workers: int = 1
    """Collection worker processes."""
    n_min: int = 1
    """Pairs seen fewer times than this are valued by the text PRM (leaves)."""
    timeout_failure: str = "auto"
    """Time-outs as failure terminals: 'yes', 'no' or 'auto' (per-task step limits), as in
    ``helpseek train``."""
    max_prm_rows: int = 3000
    """PRM training rows (a uniform subsample of the log; the encoder dominates the cost)."""
    max_helper_points: int = 1500
    """Distinct (t, state) decision points used for helper rows (each x every budget)."""
    class_balance: float = 0.5
    """Positive helper rows repeated round((neg/pos) ** this) times (0 = none)."""
    head: HeadConfig = field(default_factory=lambda: HeadConfig(epochs=60))
    """Head training settings (both heads)."""
    evaluation: EvalConfig = field(
        default_factory=lambda: EvalConfig(episodes=0, n_tasks=300, budgets=(0, 1, 2, 3))
    )
    """Live evaluation; ``episodes=0`` skips it."""
    compare_artifact: Path | None = None
    """A ``helpseek train`` features artifact whose PRM and training log give the PRM- and
    gain-threshold baselines (and the feature PRM's calibration) beside the text helper."""
    torch_threads: int = 1
    """torch intra-op threads (1 is fastest on the shared 2-core machines)."""
    seed: int = 0
    """Seed of subsampling and head training."""
    progress: bool = True
    """Progress bars."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready resolved config."""
        d = asdict(self)
        d["out"] = str(self.out)
        d["compare_artifact"] = (
            None if self.compare_artifact is None else str(self.compare_artifact)
        )
        return d


class MemoEncoder:
    """An encoder that remembers every text it encoded (texts repeat across pipeline stages)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.family, self.dim = inner.family, inner.dim
        self.base_model, self.base_model_version = inner.base_model, inner.base_model_version
        self._rows: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, D) features; only unseen texts reach the base encoder."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if todo:
            for t, row in zip(todo, self.inner.encode(todo), strict=True):
                self._rows[t] = row
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._rows[t] for t in texts]).astype(np.float32)


class TextHelperPolicy:
    """The text helper in the evaluation's helper slot: asks with the state's text.

    ``training.evaluate`` asks ``decide(features, remaining, steps_left)``; the text is read
    from the adapter, whose state is the one being decided (valid inside the call). Answers are
    memoised per (text, c, steps left): the scorer is deterministic.
    """

    def __init__(self, scorer: TextScorer, adapter: EnvAdapter, cmax: int) -> None:
        self.scorer, self.adapter, self.cmax = scorer, adapter, cmax
        self._memo: dict[tuple[str, int, int], Any] = {}

    def decide(self, features: np.ndarray, remaining: int, steps_left: int) -> Any:
        """Return the scorer's Decision for the adapter's current text."""
        key = (self.adapter.text(), int(remaining), max(int(steps_left), 0))
        if key not in self._memo:
            self._memo[key] = self.scorer.decide([key[0]], [key[1]], [key[2]])[0]
        return self._memo[key]


def _subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


def _texts(log: StepLog, where: str) -> tuple[str, ...]:
    if log.text is None:
        raise ValueError(f"{where}: the step log has no text column (collect with --text)")
    return log.text


class TextRepresentation:
    """Text states: text PRM and text helper heads on one base encoder."""

    kind = "text"

    def __init__(self, cfg: TextTrainConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.id_prefix = f"text-{cfg.backend}-"
        self.report_title = f"HelpSeek text helper ({cfg.backend})"
        self.calib: dict[str, Any] = {}
        self.hinfo: dict[str, Any] = {}

    def fit_prm(self, run: Run, steps: Steps) -> None:
        """Load the encoder; the text PRM on a subsample of the log, calibrated on the test split."""
        cfg, log, test, rng = self.cfg, steps.log, steps.test, self.rng
        self.texts = _texts(log, str(steps.log_dir))
        self.tcfg = TextModelConfig(backend=cfg.backend)
        self.base = build_encoder(self.tcfg)
        self.enc = MemoEncoder(self.base)
        run.lap(f"load {cfg.backend} encoder")
        idx = _subsample(len(log), cfg.max_prm_rows, rng)
        prm_ex = PRMExamples(tuple(self.texts[i] for i in idx), log.action[idx], log.success[idx])
        self.prm_only = train_text_model(
            self.tcfg, rng, prm=prm_ex, head=cfg.head, encoder=self.enc
        )
        test_texts = _texts(test, str(steps.log_dir))
        self.tidx = _subsample(len(test), max(cfg.max_prm_rows // 2, 1), rng)
        t = self.tidx
        p_test = self.prm_only.score([test_texts[i] for i in t], test.action[t])
        self.calib = {"text_prm": calibration(p_test, test.success[t])}
        run.lap("text prm")

    def score_rows(self, log: StepLog) -> StateScorer | None:
        """Score rows with the text PRM on their texts."""
        texts = _texts(log, "score_rows")
        return lambda rows: self.prm_only.score([texts[i] for i in rows])

    def fit_helper(self, run: Run, steps: Steps, p2: Phase2) -> None:
        """Fit the text helper on the label rows of up to ``max_helper_points`` decision points."""
        cfg = self.cfg
        points = decision_points(steps.log, p2.model, steps.steps_left)
        pick = _subsample(points.t.shape[0], cfg.max_helper_points, self.rng)
        budgets, labels = label_table(points, p2.model, p2.solution, steps.cost)
        n_b = budgets.shape[0]
        rows = points.row[pick]
        t_idx = np.repeat(rows, n_b)
        c = np.tile(budgets, rows.shape[0])
        y = labels[pick].reshape(-1).astype(np.int64)  # point-major, as (t_idx, c)
        n_pos, n_neg = int(y.sum()), int((y == 0).sum())
        rep = np.ones_like(y)
        if n_pos and n_neg and cfg.class_balance > 0:
            rep[y == 1] = max(1, round((n_neg / n_pos) ** cfg.class_balance))
        order = np.repeat(np.arange(y.shape[0]), rep)
        left = np.maximum(steps.steps_left[t_idx[order]], 0)
        ex = HelperExamples(tuple(self.texts[i] for i in t_idx[order]), c[order], left, y[order])
        self.hinfo = {
            "points": int(rows.shape[0]),
            "rows": int(y.shape[0]),
            "positives": n_pos,
            "positive_repeat": int(rep.max()),
        }
        helper_only = train_text_model(
            self.tcfg,
            self.rng,
            helper=ex,
            head=cfg.head,
            cmax=cfg.cmax,
            horizon=steps.horizon,
            cost=steps.cost,
            encoder=self.enc,
        )
        self.scorer = TextScorer(self.tcfg, self.base, self.prm_only.prm, helper_only.helper)
        uniq = np.arange(min(len(ex.texts), 4 * cfg.max_helper_points))
        p_fit = helper_only.decide_prob(
            [ex.texts[i] for i in uniq], ex.remaining[uniq], ex.steps_left[uniq]
        )
        y_fit = ex.labels[uniq].astype(bool)
        pred = p_fit >= 0.5
        self.hinfo.update(
            accuracy=float((pred == y_fit).mean()),
            recall=float(pred[y_fit].mean()) if y_fit.any() else float("nan"),
            precision=float(y_fit[pred].mean()) if pred.any() else float("nan"),
        )
        run.lap("text helper")

    def policies(self, run: Run, steps: Steps, p2: Phase2) -> PolicySet:
        """Return the text helper; with ``compare_artifact`` its feature PRM and log (thresholds)."""
        from helpseek_core.prm import MLPPRM

        assert steps.adapter is not None  # live evaluation only
        ps = PolicySet(
            k=steps.k,
            cost=steps.cost,
            helper=TextHelperPolicy(self.scorer, steps.adapter, self.cfg.cmax),  # type: ignore[arg-type]
        )
        if self.cfg.compare_artifact is not None:
            art = load_artifact(self.cfg.compare_artifact)
            prm = MLPPRM.from_artifact(art)
            if prm is None:
                raise ValueError(f"{art.path}: --compare-artifact has no PRM (prm.npz)")
            ps.prm = prm
            if (art.path / "run" / "log" / "manifest.json").is_file():
                ps.log, _ = read_steplog(art.path / "run" / "log", split="train")
            test, t = steps.test, self.tidx
            a = test.action[t].astype(np.int64)
            p = prm.score(test.features[t])[np.arange(a.shape[0]), a]
            self.calib["feature_prm"] = calibration(p, test.success[t])
            ps.notes.append(
                f"threshold baselines: feature PRM and log of {art.path} ({art.artifact_id})"
            )
        return ps

    def finish_metrics(self, metrics: dict[str, Any], run: Run, steps: Steps) -> None:
        """Label the helper as the text helper; add the PRM calibration."""
        if "helper" in metrics["policies"]:
            metrics["policies"]["helper"]["label"] = f"text helper ({self.cfg.backend})"
        metrics["prm_calibration"] = self.calib

    def offline(self, run: Run, steps: Steps, p2: Phase2) -> dict[str, Any] | None:
        """No offline evaluation for text yet (each (text, c, steps left) is a forward pass)."""
        return None

    def manifest(self, steps: Steps, p2: Phase2) -> dict[str, Any]:
        """Text model, PRM calibration, helper fit; an empty feature schema."""
        return {
            "feature_schema": {"names": [], "dim": 0},
            "helper": {"threshold": 0.5, "fit": self.hinfo},
            "text_model": {
                "backend": self.cfg.backend,
                "family": self.tcfg.family,
                "base_model": self.base.base_model,
                "feature_dim": self.base.dim,
            },
            "prm_calibration": self.calib,
        }

    def write(self, directory: Path, manifest: dict[str, Any]) -> None:
        """Write the text model files, then load them back through ``helpseek_text.load_scorer``."""
        files = save_text_model(directory, self.scorer)
        write_artifact(directory, manifest, {}, extra_files=files)
        load_scorer(load_artifact(directory), encoder=self.base)

    def training_info(self) -> dict[str, Any]:
        """PRM calibration and helper fit."""
        return {"prm_calibration": self.calib, "helper_fit": self.hinfo}


def main(cfg: TextTrainConfig) -> Path:
    """Run every stage into ``cfg.out``; return the artifact directory."""
    settings = RunSettings(
        out=cfg.out,
        cmax=cfg.cmax,
        n_min=cfg.n_min,
        leaf="prm",
        timeout_failure=cfg.timeout_failure,
        evaluation=cfg.evaluation,
        progress=cfg.progress,
        torch_threads=cfg.torch_threads,
        config=cfg.to_dict(),
        name="train-text",
    )
    source = LiveSource(
        CollectConfig(
            env=cfg.env,
            out=cfg.out,
            train_seeds=cfg.train_seeds,
            test_seeds=cfg.test_seeds,
            episodes_per_seed=cfg.episodes_per_seed,
            k=cfg.k,
            cost=cfg.cost,
            workers=cfg.workers,
            record_text=True,
            progress=cfg.progress,
        )
    )
    return train(settings, source, TextRepresentation(cfg))


ALIASES = {
    "evaluation.episodes": "--eval-episodes",
    "evaluation.n_tasks": "--eval-tasks",
    "evaluation.budgets": "--budgets",
    "evaluation.allow_failed_checks": "--allow-failed-checks",
}
"""Flags kept as they were before the parser was derived."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek train-text``: every field of :class:`TextTrainConfig`."""
    add_dataclass_arguments(parser, TextTrainConfig, aliases=ALIASES)


def from_args(ns: argparse.Namespace) -> TextTrainConfig:
    """Build the config from parsed ``helpseek train-text`` arguments (given flags only)."""
    return from_namespace(TextTrainConfig, {k: v for k, v in vars(ns).items() if k != "command"})
