"""``helpseek train-text``: the method on text states, into a ``kind: "text"`` artifact.

    collect (with the step log's ``text`` column) -> text PRM (helpseek_text, on the log texts)
    -> tabular model with text-PRM leaves -> exact budgeted DP -> labels -> text helper
    (budget and steps left written into the prompt) -> artifact -> optional live evaluation

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

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core import metrics as M
from helpseek_core.artifact import load_artifact, write_artifact
from helpseek_core.budgeted import solve_budgeted
from helpseek_core.labels import label_budgeted, labelable
from helpseek_core.model import estimate_model, model_state_keys
from helpseek_core.prm import TabularPRM
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
from training import collect as collect_stage
from training.config import CollectConfig, parse_seeds
from training.envs import EnvAdapter, make_env
from training.evaluate import EvalConfig
from training.phase2 import task_steps_left
from training.steplog_io import read_steplog

__all__ = [
    "MemoEncoder",
    "TextTrainConfig",
    "add_arguments",
    "calibration",
    "evaluate_text",
    "from_args",
    "main",
]


@dataclass(frozen=True)
class TextTrainConfig:
    """One ``helpseek train-text`` run."""

    env: str
    """Environment spec (``make_env`` grammar); default preset ``taxi``."""
    out: Path
    """Run / artifact directory."""
    backend: str = "embed"
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
    """A ``helpseek train`` features artifact to evaluate beside the text helper (its helper,
    PRM and training log give the feature helper and threshold baselines)."""
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

    def encode(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        """(B,) texts -> (B, D) features; only unseen texts reach the base encoder."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if todo:
            for t, row in zip(todo, self.inner.encode(todo), strict=True):
                self._rows[t] = row
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._rows[t] for t in texts]).astype(np.float32)


def _say(msg: str) -> None:
    print(f"[helpseek train-text] {msg}", flush=True)


def calibration(probs: np.ndarray, outcomes: np.ndarray) -> dict[str, float]:
    """ECE (10 bins), Brier score and AUROC of success probabilities (helpseek_core.metrics)."""
    y = np.asarray(outcomes, np.float64)
    return {
        "ece": M.ece(probs, y),
        "brier": M.brier_score(probs, y),
        "auroc": M.auroc(probs, y),
        "rows": int(y.shape[0]),
        "base_rate": float(y.mean()),
    }


def _subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, cap, replace=False))


def _texts(log: StepLog, where: str) -> tuple[str, ...]:
    if log.text is None:
        raise ValueError(f"{where}: the step log has no text column (collect with --text)")
    return log.text


def _helper_examples(
    log: StepLog, texts: tuple[str, ...], left: np.ndarray, model: Any, solution: Any,
    cfg: TextTrainConfig, rng: np.random.Generator,
) -> tuple[HelperExamples, dict[str, Any]]:  # fmt: skip
    """Distinct logged (t, s) x every c in [cost, cmax], labelled by the exact DP."""
    known = np.flatnonzero(labelable(model, log.t, log.state_key))
    pair = np.stack([log.t[known].astype(np.int64), log.state_key[known]], axis=1)
    _, first = np.unique(pair, axis=0, return_index=True)
    rows = known[first]
    rows = rows[_subsample(rows.shape[0], cfg.max_helper_points, rng)]
    labels = label_budgeted(solution, model, log.t[rows], log.state_key[rows])
    budgets = np.arange(cfg.cost, cfg.cmax + 1)
    t_idx = np.repeat(rows, budgets.shape[0])
    c = np.tile(budgets, rows.shape[0])
    y = labels[np.repeat(np.arange(rows.shape[0]), budgets.shape[0]), c].astype(np.int64)
    n_pos, n_neg = int(y.sum()), int((y == 0).sum())
    rep = np.ones_like(y)
    if n_pos and n_neg and cfg.class_balance > 0:
        rep[y == 1] = max(1, round((n_neg / n_pos) ** cfg.class_balance))
    order = np.repeat(np.arange(y.shape[0]), rep)
    ex = HelperExamples(
        tuple(texts[i] for i in t_idx[order]), c[order], np.maximum(left[t_idx[order]], 0),
        y[order],
    )  # fmt: skip
    info = {"points": int(rows.shape[0]), "rows": int(y.shape[0]), "positives": n_pos,
            "positive_repeat": int(rep.max())}  # fmt: skip
    return ex, info


def main(cfg: TextTrainConfig) -> Path:
    """Run every stage into ``cfg.out``; return the artifact directory."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.out)
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    rng = np.random.default_rng(cfg.seed)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 2)
        _say(f"{stage} done in {timings[stage]:.1f}s")
        clock = now

    ccfg = CollectConfig(
        env=cfg.env, out=run_dir / "log", train_seeds=cfg.train_seeds, test_seeds=cfg.test_seeds,
        episodes_per_seed=cfg.episodes_per_seed, k=cfg.k, cost=cfg.cost, workers=cfg.workers,
        record_text=True, progress=cfg.progress,
    )  # fmt: skip
    log_dir = collect_stage.main(ccfg, log=_say)
    log, log_manifest = read_steplog(log_dir, split="train")
    test_log, _ = read_steplog(log_dir, split="test")
    texts = _texts(log, str(log_dir))
    lap("collect")

    tcfg = TextModelConfig(backend=cfg.backend)  # type: ignore[arg-type]
    base = build_encoder(tcfg)
    enc = MemoEncoder(base)
    lap(f"load {cfg.backend} encoder")

    # Phase I: the text PRM on the log's texts, calibrated on the held-out seeds
    idx = _subsample(len(log), cfg.max_prm_rows, rng)
    prm_ex = PRMExamples(tuple(texts[i] for i in idx), log.action[idx], log.success[idx])
    prm_only = train_text_model(tcfg, rng, prm=prm_ex, head=cfg.head, encoder=enc)  # type: ignore[arg-type]
    test_texts = _texts(test_log, str(log_dir))
    tidx = _subsample(len(test_log), max(cfg.max_prm_rows // 2, 1), rng)
    p_test = prm_only.score([test_texts[i] for i in tidx], test_log.action[tidx])
    calib = {"text_prm": calibration(p_test, test_log.success[tidx])}
    lap("text prm")

    # Phase II: tabular model with text-PRM leaves, exact budgeted DP
    adapter = make_env(cfg.env)
    horizon, left = task_steps_left(log, adapter)
    keys = model_state_keys(log)
    leaves = TabularPRM.fit(log).score_keys(keys)
    uk, first = np.unique(log.state_key, return_index=True)
    leaves[np.searchsorted(keys, uk)] = prm_only.score([texts[i] for i in first])
    model = estimate_model(log, horizon=horizon, k=cfg.k, cost=cfg.cost, n_min=cfg.n_min,
                           leaf_values=leaves)  # fmt: skip
    solution = solve_budgeted(model, cfg.cmax)
    lap("model+dp")

    # Phase III: the text helper on the DP labels (budget and steps left in the prompt)
    hex_, hinfo = _helper_examples(log, texts, left, model, solution, cfg, rng)
    helper_only = train_text_model(
        tcfg, rng, helper=hex_, head=cfg.head, cmax=cfg.cmax, horizon=horizon, cost=cfg.cost,
        encoder=enc,  # type: ignore[arg-type]
    )  # fmt: skip
    scorer = TextScorer(tcfg, base, prm_only.prm, helper_only.helper)
    uniq = np.arange(min(len(hex_.texts), 4 * cfg.max_helper_points))
    p_fit = helper_only.decide_prob(
        [hex_.texts[i] for i in uniq], hex_.remaining[uniq], hex_.steps_left[uniq]
    )
    y_fit = hex_.labels[uniq].astype(bool)
    pred = p_fit >= 0.5
    hinfo.update(
        accuracy=float((pred == y_fit).mean()),
        recall=float(pred[y_fit].mean()) if y_fit.any() else float("nan"),
        precision=float(y_fit[pred].mean()) if pred.any() else float("nan"),
    )
    lap("text helper")

    # Export
    files = save_text_model(out, scorer)
    manifest = {
        "artifact_id": f"text-{cfg.backend}-{adapter.spec.split(':')[0].lower()}-{uuid.uuid4().hex[:10]}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "text",
        "feature_schema": {"names": [], "dim": 0},
        "cmax": cfg.cmax, "horizon": horizon, "k": cfg.k, "cost": cfg.cost,
        "env": adapter.spec, "agent": adapter.agent, "expert": adapter.expert,
        "helper": {"threshold": 0.5, "fit": hinfo},
        "text_model": {"backend": cfg.backend, "family": tcfg.family,
                       "base_model": base.base_model, "feature_dim": base.dim},
        "prm_calibration": calib,
        "dp": {"success": solution.success.tolist(), "usage": solution.usage.tolist(),
               "states": model.n_states},
        "training_config": cfg.to_dict(),
        "collection": {k: log_manifest.get(k) for k in ("schema_version", "env", "agent", "expert")},
    }  # fmt: skip
    write_artifact(out, manifest, {}, extra_files=files)
    load_scorer(load_artifact(out), encoder=base)  # refuse to finish with an unloadable artifact
    lap("export")

    if cfg.evaluation.episodes > 0:
        calib.update(evaluate_text(adapter, scorer, model, solution, cfg, test_log, tidx))
        lap("evaluate")
    (run_dir / "training.json").write_text(json.dumps(
        {"timings_s": timings, "prm_calibration": calib, "helper_fit": hinfo,
         "dp_success": solution.success.tolist()}, indent=2))  # fmt: skip
    _say(f"text artifact written to {out}")
    return out


def evaluate_text(
    adapter: EnvAdapter, scorer: TextScorer, model: Any, solution: Any, cfg: TextTrainConfig,
    test_log: StepLog, test_rows: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """Live evaluation (Phase III's ``evaluate``) plus the text helper on the same seeds.

    Writes ``cfg.out/report``; returns the feature PRM's calibration on the held-out rows when
    ``cfg.compare_artifact`` gives one (else ``{}``).
    """
    from helpseek_core.helper import Helper
    from helpseek_core.prm import MLPPRM
    from training.evaluate import PolicySet, evaluate, run_cell
    from training.phase2 import oracle_for
    from training.report import cell_metrics, policy_metrics, write_report

    ev = replace(cfg.evaluation, progress=cfg.progress)
    o_model, o_sol, o_kind = oracle_for(
        adapter, cfg.k, cfg.cost, max(cfg.cmax, *ev.budgets), (model, solution)
    )
    ps = PolicySet(k=cfg.k, cost=cfg.cost, oracle_model=o_model, oracle=o_sol, oracle_kind=o_kind)
    calib: dict[str, Any] = {}
    if cfg.compare_artifact is not None:
        art = load_artifact(cfg.compare_artifact)
        ps.helper, ps.prm = Helper.from_artifact(art), MLPPRM.from_artifact(art)
        if (art.path / "run" / "log" / "manifest.json").is_file():
            ps.log, _ = read_steplog(art.path / "run" / "log", split="train")
        a = test_log.action[test_rows].astype(np.int64)
        p = ps.prm.score(test_log.features[test_rows])[np.arange(a.shape[0]), a]
        calib["feature_prm"] = calibration(p, test_log.success[test_rows])
        ps.notes.append(f"feature helper and PRM from {art.path} ({art.artifact_id})")
    metrics = evaluate(adapter, ps, ev, cmax=cfg.cmax)
    memo: dict[tuple[str, int, int], bool] = {}

    def decide(ctx: Any) -> bool:
        key = (ctx.text, int(ctx.remaining_budget), max(int(ctx.steps_left), 0))
        if key not in memo:  # deterministic: same (text, c, left) -> same answer
            memo[key] = scorer.decide([key[0]], [key[1]], [key[2]])[0].intervene
        return memo[key]

    cells = [
        cell_metrics(run_cell(adapter, decide, b, cfg.k, cfg.cost, ev.episodes, ev.seed_start,
                              ev.n_tasks, ev.root_seed), b)
        for b in ev.budgets
    ]  # fmt: skip
    ref = metrics["reference"]
    pol = policy_metrics(cells, ref["never"], ref["always"])
    pol["label"] = f"text helper ({cfg.backend})"
    oracle = {
        c["budget"]: c["success"] for c in metrics["policies"].get("dp_oracle", {}).get("cells", [])
    }
    for c in cells:
        c["oracle_ratio"] = (
            M.oracle_ratio(c["success"], oracle[c["budget"]]) if oracle else float("nan")
        )
    metrics["policies"]["text_helper"] = pol
    metrics["prm_calibration"] = calib
    write_report(metrics, Path(cfg.out) / "report", title=f"HelpSeek text helper ({cfg.backend})")
    return calib


def add_arguments(parser: Any) -> None:
    """Arguments of ``helpseek train-text``."""
    parser.add_argument("--env", default="taxi", help="env spec (default: taxi)")
    parser.add_argument("--backend", choices=("embed", "lm"), default="embed")
    parser.add_argument("--out", required=True, type=Path, help="run / artifact directory")
    parser.add_argument("--cmax", type=int, default=3)
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--train-seeds", default="0-39")
    parser.add_argument("--test-seeds", default="10000-10009")
    parser.add_argument("--episodes-per-seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-prm-rows", type=int, default=3000)
    parser.add_argument("--max-helper-points", type=int, default=1500)
    parser.add_argument("--head-epochs", type=int, default=60)
    parser.add_argument("--eval-episodes", type=int, default=0, help="0 = no live evaluation")
    parser.add_argument("--eval-tasks", type=int, default=300)
    parser.add_argument("--budgets", default="0,1,2,3")
    parser.add_argument("--compare-artifact", type=Path, help="features artifact to compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


def from_args(ns: Any) -> TextTrainConfig:
    """Build the config from parsed ``helpseek train-text`` arguments."""
    ev = EvalConfig(
        episodes=ns.eval_episodes, n_tasks=ns.eval_tasks,
        budgets=tuple(int(b) for b in ns.budgets.split(",")), progress=not ns.no_progress,
    )  # fmt: skip
    return TextTrainConfig(
        env=ns.env, out=ns.out, backend=ns.backend, cmax=ns.cmax, k=ns.k,
        train_seeds=parse_seeds(ns.train_seeds), test_seeds=parse_seeds(ns.test_seeds),
        episodes_per_seed=ns.episodes_per_seed, workers=ns.workers,
        max_prm_rows=ns.max_prm_rows, max_helper_points=ns.max_helper_points,
        head=replace(HeadConfig(), epochs=ns.head_epochs), evaluation=ev,
        compare_artifact=ns.compare_artifact, seed=ns.seed, progress=not ns.no_progress,
    )  # fmt: skip
