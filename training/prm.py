"""Phase I PRMs: ``helpseek prm --log DIR --out DIR``.

config -> read the train / test splits of a step log -> fit (a) the tabular Monte-Carlo PRM
(``helpseek_core.prm.TabularPRM``) and (b) a torch MLP on ``[FeatureStats.normalise(features),
action]`` exported as ``helpseek_core.prm.MLPPRM`` (``prm.npz``) -> calibration on the held-out
(test-seed) episodes: ECE, Brier, AUROC against episode success, next to a constant predictor.
The held-out episodes are the log's test split, else a seeded fraction of its episodes
(:func:`training.steplog_io.read_splits`). No environment is needed; where the log's env spec
builds one with an exact model (toy_text), the report adds the mean absolute error of each PRM
against the exact success probability Q_p(t, s, a) of the logged behaviour (base agent with
random interventions at the row's p, k-step expert macro actions, step limit H).

Outputs: ``prm.npz``, ``report.json``, ``report.md``, ``config.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.helper import FeatureStats
from helpseek_core.metrics import auroc, brier_score, ece
from helpseek_core.prm import MLPPRM, PRM_FILE, TabularPRM
from helpseek_core.types import StepLog
from training.config import PRMConfig, add_dataclass_arguments, from_namespace
from training.envs import EnvAdapter, ExactArrays, make_env
from training.steplog_io import read_splits

__all__ = ["add_arguments", "calibration", "exact_behavior_q", "fit", "from_args", "main"]


def calibration(probs: np.ndarray, outcomes: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """ECE, Brier, AUROC, rows and base rate of success probabilities against 0/1 outcomes.

    The one calibration report of the training package (feature and text PRMs alike).
    """
    p = np.clip(np.asarray(probs, np.float64), 0.0, 1.0)
    y = np.asarray(outcomes).astype(np.int64)
    return {
        "ece": ece(p, y, n_bins),
        "brier": brier_score(p, y),
        "auroc": auroc(p, y),
        "rows": int(y.shape[0]),
        "base_rate": float(y.mean()) if y.size else float("nan"),
    }


def exact_behavior_q(ex: ExactArrays, p: float, k: int) -> np.ndarray:
    """Exact Q_p[t, a, s]: P(success | at step t in s take a, then behave with p), (H, 2, S).

    Proceed = one weak-agent step; intervene = up to k expert steps (cut by the step limit);
    afterwards each decision point intervenes with probability p. Reaching step H = failure.
    """
    h, s = ex.horizon, ex.state_keys.shape[0]
    pw = np.einsum("sa,ast->st", ex.weak_policy, ex.trans)
    sw = np.einsum("sa,as->s", ex.weak_policy, ex.succ)
    pe = np.einsum("sa,ast->st", ex.expert_policy, ex.trans)
    se = np.einsum("sa,as->s", ex.expert_policy, ex.succ)
    v = np.zeros((h + 1, s))
    macro = np.zeros((k + 1, h + 1, s))  # macro[j, t]: value with j expert steps still to go
    q = np.zeros((h, 2, s))
    for t in range(h - 1, -1, -1):
        for j in range(1, k + 1):  # macro[j, h] = 0: the step limit ends the episode
            macro[j, t] = se + pe @ (v[t + 1] if j == 1 else macro[j - 1, t + 1])
        q[t, 0] = sw + pw @ v[t + 1]
        q[t, 1] = macro[k, t]
        v[t] = (1 - p) * q[t, 0] + p * q[t, 1]
    return q


def _exact_targets(log: StepLog, ex: ExactArrays, k: int) -> np.ndarray:
    idx = np.searchsorted(ex.state_keys, log.state_key)
    out = np.empty(len(log))
    for p in np.unique(log.behavior_p):
        q = exact_behavior_q(ex, float(p), k)
        rows = np.flatnonzero(log.behavior_p == p)
        out[rows] = q[log.t[rows], log.action[rows].astype(np.int64), idx[rows]]
    return out


def _exact_adapter(spec: str, log_fn: Any) -> EnvAdapter | None:
    """Return the log's environment if its spec builds one with an exact model, else None."""
    try:
        adapter = make_env(spec)
    except (ValueError, ImportError) as exc:  # a service log ("service"), a user's own system
        log_fn(f"no exact comparison: env {spec!r} is not buildable here ({exc})")
        return None
    return adapter if callable(getattr(adapter, "exact_arrays", None)) else None


def main(cfg: PRMConfig, log_fn: Any = print) -> Path:
    """Read the log's train / held-out splits, fit both PRMs, write the outputs.

    The output folder appears all at once (:mod:`training.staging`): a failure leaves none.
    """
    from training.staging import staged_output

    train, test, manifest, how = read_splits(cfg.log, cfg.test_fraction, cfg.split_seed)
    with staged_output(Path(cfg.out), marker="config.json") as stage:
        fit(cfg, train, test, manifest, log_fn, held_out=how, directory=stage)
    return Path(cfg.out)


def fit(
    cfg: PRMConfig,
    train: StepLog,
    test: StepLog,
    manifest: dict[str, Any],
    log_fn: Any = print,
    adapter: EnvAdapter | None = None,
    held_out: str = "test split",
    directory: Path | None = None,
) -> Path:
    """Fit both PRMs on ``train``, calibrate on ``test``, write the outputs; return the folder.

    Files go to ``directory`` (default ``cfg.out``). ``adapter``: the environment for the exact
    comparison (default: built from the manifest's env spec when it can be; never required).
    """
    from training.mlp import fit_mlp  # torch is imported only here

    out = Path(cfg.out if directory is None else directory)
    out.mkdir(parents=True, exist_ok=True)
    y_train = train.success.astype(np.float32)
    y_test = test.success.astype(np.int64)
    rows = np.arange(len(test))

    tab = TabularPRM.fit(train, prior_strength=cfg.prior_strength)
    p_tab = tab.score_keys(test.state_key)[rows, test.action.astype(np.int64)]

    stats = FeatureStats.fit(train.features)
    x = np.concatenate([stats.normalise(train.features), train.action[:, None]], axis=1)
    mlp = fit_mlp(
        x,
        y_train,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    prm = MLPPRM(mlp, stats)
    p_mlp = prm.score(test.features)[rows, test.action.astype(np.int64)]
    arrays: dict[str, Any] = prm.to_arrays()
    np.savez(out / PRM_FILE, **arrays)

    const = float(y_train.mean())
    report: dict[str, Any] = {
        "env": manifest.get("env", "unknown"),
        "held_out": held_out,
        "rows": {"train": len(train), "test": len(test)},
        "test_success_rate": float(y_test.mean()),
        "mlp": calibration(p_mlp, y_test, cfg.n_bins),
        "tabular": calibration(p_tab, y_test, cfg.n_bins),
        "constant": {**calibration(np.full(len(test), const), y_test, cfg.n_bins), "value": const},
        "tabular_test_keys_seen": float(np.mean(tab.counts_for(test.state_key).sum(1) > 0)),
    }
    if adapter is None or not callable(getattr(adapter, "exact_arrays", None)):
        adapter = _exact_adapter(str(manifest.get("env", "")), log_fn) if cfg.exact else None
    if adapter is not None and "k" in manifest:
        target = _exact_targets(test, adapter.exact_arrays(), int(manifest["k"]))  # type: ignore[attr-defined]
        report["exact_mae"] = {
            "mlp": float(np.mean(np.abs(p_mlp - target))),
            "tabular": float(np.mean(np.abs(p_tab - target))),
            "constant": float(np.mean(np.abs(const - target))),
        }
        report["exact_mae_note"] = "vs exact Q_p(t, s, a) of the logged behaviour, test rows"
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "report.md").write_text(_markdown(report))
    log_fn(_markdown(report))
    return out


def _markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# PRM calibration: {r['env']}",
        f"train rows {r['rows']['train']}, test rows {r['rows']['test']}, "
        f"test success {r['test_success_rate']:.3f}",
        "",
        "| PRM | ECE | Brier | AUROC | MAE vs exact |",
        "|---|---|---|---|---|",
    ]
    for name in ("mlp", "tabular", "constant"):
        m = r[name]
        mae = r.get("exact_mae", {}).get(name)
        lines.append(
            f"| {name} | {m['ece']:.4f} | {m['brier']:.4f} | {m['auroc']:.3f} | "
            f"{'n/a' if mae is None else f'{mae:.4f}'} |"
        )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek prm`` (derived from :class:`PRMConfig`)."""
    add_dataclass_arguments(parser, PRMConfig, skip=("extra",))


def from_args(ns: argparse.Namespace) -> PRMConfig:
    """Build the config from parsed ``helpseek prm`` arguments."""
    return from_namespace(PRMConfig, ns)
