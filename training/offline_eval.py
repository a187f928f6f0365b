"""Offline evaluation: how good is the helper, judged from a step log alone (no environment).

``helpseek train --log`` without ``--env`` cannot run live episodes, so its report estimates
each policy's success per budget C on the log's **held-out episodes** (its test split, else a
seeded fraction of its episodes), three ways (DR also weighted), each with a 95% interval:

1. **model-based** — a tabular model estimated from the held-out episodes only (leaves valued
   by the PRM trained on the training episodes) and exact policy evaluation of each policy on
   it (:func:`helpseek_core.exact.evaluate_policy`, a forward pass over (t, s, c)); interval:
   percentile bootstrap over held-out episodes (model re-estimated per resample);
2. **importance sampling** — weighted per-episode importance sampling from the logged behaviour
   probabilities (:func:`training.off_policy.prefix_weights`): an episode's weight is
   1[every logged action = the policy's action at the logged state and remaining budget] /
   P_behaviour(its logged actions), P_behaviour the mixture of the episodes' logged p
   (multiple importance sampling) where each episode was logged at one p, else the product of
   the rows' own probabilities; the estimate is sum(w * success) / sum(w). With the terminal reward only,
   per-decision IS equals per-episode IS. The effective sample size n_eff = (sum w)^2 / sum w^2
   says how many episodes it really rests on; interval: Wilson's at n_eff (rounded) — a
   percentile bootstrap collapses to a point when the few matched episodes agree;
3. **doubly robust** — per-decision DR (:func:`training.off_policy.dr_estimate`) with the
   *training* episodes' model (the helper's own) as the control variate: unbiased like IS
   whatever that model's errors, tighter the better it is; interval: normal, mean +- 1.96 SE
   over held-out episodes. Beside it the weighted DR (self-normalised per decision index:
   biased, consistent, stays near [0, 1] where a few weights dominate), percentile bootstrap.

Policies: the helper, never, and the PRM- / gain-threshold baselines, calibrated as the live
evaluation does without an exact oracle (thresholds matched, on the training log, to the
helper's predicted intervention rate at that budget). Every figure is labelled an *offline
estimate*: the model-based one inherits the model's errors (unseen states proceed, leaves are
the PRM), the IS one is unbiased but can rest on few episodes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core.baselines import BatchContext, calibrate, make_policy
from helpseek_core.exact import evaluate_policy
from helpseek_core.helper import Helper
from helpseek_core.metrics import wilson_interval
from helpseek_core.model import align_keys
from helpseek_core.occupancy import intervention_rate
from helpseek_core.prm import MLPPRM
from helpseek_core.types import StepLog, TabularModel
from training.off_policy import RowDecide, dr_terms, is_estimate, wdr_value
from training.phase2 import estimate
from training.source import Steps

__all__ = ["OFFLINE_LABEL", "model_policy_table", "offline_evaluation"]

OFFLINE_LABEL = "offline estimate (held-out episodes of the log, no environment)"


def _first_visits(log: StepLog, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S,) row of each model state's first logged visit (-1: next-state only) and a mask."""
    uk, first = np.unique(log.state_key, return_index=True)
    rows = np.full(keys.shape[0], -1, np.int64)
    pos = align_keys(keys, uk)
    rows[pos[pos >= 0]] = first[pos >= 0]
    return rows, rows >= 0


def model_policy_table(
    model: TabularModel, log: StepLog, steps_left: np.ndarray, decide: RowDecide, cmax: int
) -> np.ndarray:
    """(H, S, C) bool: ``decide`` at every (t, model state, c), on the state's first visit.

    A state's features (and task step limit) are those of its first visit in ``log``; states
    logged only as next states proceed (nothing to score them on).
    """
    h, n_s = model.horizon, model.n_states
    rows, known = _first_visits(log, model.state_keys)
    r = rows[known]
    limit = steps_left[r] + log.t[r].astype(np.int64)  # the state's task step limit
    table = np.zeros((h, n_s, cmax + 1), bool)
    budgets = np.arange(cmax + 1)
    for t in range(h):
        left = np.maximum(limit - t, 0)
        cols = [decide(r, np.full(r.shape, c), left) for c in budgets]
        table[t][known] = np.stack(cols, axis=1)
    return table


def _wis(w: np.ndarray, r: np.ndarray) -> float:
    total = float(w.sum())
    return float((w * r).sum() / total) if total > 0 else float("nan")


def _bootstrap_episodes(log: StepLog, rng: np.random.Generator) -> StepLog:
    ep = log.episode_id
    start = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    end = np.r_[start[1:], len(log)]
    pick = rng.integers(0, start.shape[0], start.shape[0])
    rows = np.concatenate([np.arange(start[i], end[i]) for i in pick])
    return log.take(rows)


def _policies(
    log: StepLog, log_prm: np.ndarray, helper: Helper, cost: int
) -> dict[str, Callable[[dict[str, float] | None], RowDecide]]:
    """Row deciders on ``log`` (its PRM scores ``log_prm``); thresholds take their parameters."""
    test = log

    def helper_rows(rows: np.ndarray, c: np.ndarray, left: np.ndarray) -> np.ndarray:
        s = helper.score(test.features[rows], c.reshape(-1, 1), left)
        return np.asarray(s.intervene)[:, 0]

    def baseline(name: str) -> Callable[[dict[str, float] | None], RowDecide]:
        def make(params: dict[str, float] | None) -> RowDecide:
            policy = make_policy(name, **(params or {}))

            def rows_decide(rows: np.ndarray, c: np.ndarray, left: np.ndarray) -> np.ndarray:
                ctx = BatchContext(
                    t=test.t[rows],
                    steps_left=left,
                    remaining=c,
                    cost=cost,
                    features=test.features[rows],
                    prm=log_prm[rows],
                )
                return policy.decide_batch(ctx, np.random.default_rng(0))

            return rows_decide

        return make

    return {
        "helper": lambda _: helper_rows,
        "never": lambda _: lambda rows, c, left: np.zeros(rows.shape[0], bool),
        "prm_threshold": baseline("prm_threshold"),
        "gain_threshold": baseline("gain_threshold"),
    }


LABELS = {
    "helper": "helper",
    "never": "never",
    "prm_threshold": "PRM-threshold",
    "gain_threshold": "gain-threshold",
}


def offline_evaluation(
    steps: Steps,
    helper: Helper,
    prm: MLPPRM,
    train_model: TabularModel,
    *,
    n_min: int,
    leaf: str,
    timeout_failure: bool,
    budgets: tuple[int, ...],
    out: Path,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Estimate every policy's success per budget offline; write ``out``; return a summary.

    ``train_model`` (the model the helper was trained on) is the doubly robust estimate's
    control variate; the model-based estimate uses a model of the held-out episodes only.
    """
    test, left = steps.test, steps.test_steps_left
    cmax = max(budgets)
    model = estimate(test, prm, steps.horizon, steps.k, steps.cost, n_min, leaf, timeout_failure)
    test_prm = prm.score(test.features)
    makers = _policies(test, test_prm, helper, steps.cost)
    train = steps.log
    train_prm = prm.score(train.features)
    train_makers = _policies(train, train_prm, helper, steps.cost)
    ctxs = BatchContext(
        t=train.t,
        steps_left=np.zeros(len(train), np.int64),
        remaining=np.full(len(train), 10**6),
        cost=steps.cost,
        features=train.features,
        prm=train_prm,
    )
    tables: dict[str, dict[int, np.ndarray]] = {}
    deciders: dict[str, dict[int, RowDecide]] = {}
    params: dict[str, dict[int, dict[str, float]]] = {}
    h_table = model_policy_table(model, test, left, makers["helper"](None), cmax)
    h_rate = intervention_rate(model, h_table)
    for name, make in makers.items():
        tables[name], deciders[name] = {}, {}
        for b in budgets:
            if name in ("prm_threshold", "gain_threshold"):
                params.setdefault(name, {})[b] = calibrate(name, ctxs, float(h_rate[b]))
                decide = make(params[name][b])
                tables[name][b] = model_policy_table(model, test, left, decide, cmax)
            else:
                decide = make(None)
                tables[name][b] = h_table if name == "helper" else np.zeros_like(h_table)
            deciders[name][b] = decide
    rng = np.random.default_rng(seed)
    boots = []  # (re-estimated model, its states' index in ``model``) per resample
    for _ in range(bootstrap):
        m = estimate(
            _bootstrap_episodes(test, rng),
            prm,
            steps.horizon,
            steps.k,
            steps.cost,
            n_min,
            leaf,
            timeout_failure,
        )
        boots.append((m, align_keys(model.state_keys, m.state_keys)))
    policies: dict[str, Any] = {}
    for name in makers:
        cells = []
        for b in budgets:
            table = tables[name][b]
            success, usage = evaluate_policy(model, table, budget=b)
            samples = []
            for m, idx in boots:
                samples.append(evaluate_policy(m, table[:, idx, :], budget=b)[0])
            w, r = is_estimate(test, left, deciders[name][b], b, steps.cost)
            plan = model_policy_table(
                train_model,
                train,
                steps.steps_left,
                train_makers[name](params.get(name, {}).get(b)),
                cmax,
            )
            terms = dr_terms(test, left, deciders[name][b], b, steps.cost, train_model, plan)
            dr = (terms[0] * terms[2] - terms[0] * terms[3] + terms[1] * terms[4]).sum(axis=1)
            n_ep = dr.shape[0]
            wdr = wdr_value(terms)
            wdr_s = np.array(
                [wdr_value(terms, rng.integers(0, n_ep, n_ep)) for _ in range(bootstrap)]
            )
            half = (
                1.96 * float(dr.std(ddof=1)) / np.sqrt(dr.shape[0]) if dr.shape[0] > 1 else np.nan
            )
            est, ess = _wis(w, r), float(w.sum() ** 2 / max(float((w**2).sum()), 1e-300))
            n_eff = max(int(round(ess)), 1)
            is_ci = (
                list(wilson_interval(int(round(est * n_eff)), n_eff))
                if np.isfinite(est)
                else [float("nan"), float("nan")]
            )
            cells.append(
                {
                    "budget": b,
                    "model": {
                        "success": success,
                        "ci": _ci(np.asarray(samples)),
                        "interventions_per_episode": usage,
                        "intervention_rate": float(intervention_rate(model, table)[b]),
                    },
                    "importance_sampling": {
                        "success": est,
                        "ci": is_ci,
                        "ess": ess,
                        "matched_episodes": int((w > 0).sum()),
                        "episodes": int(w.shape[0]),
                    },
                    "doubly_robust": {
                        "success": float(dr.mean()),
                        "ci": [float(dr.mean() - half), float(dr.mean() + half)],
                    },
                    "weighted_doubly_robust": {"success": wdr, "ci": _ci(wdr_s)},
                }
            )
        policies[name] = {"label": LABELS[name], "cells": cells}
    metrics = {
        "evaluation_kind": "offline",
        "label": OFFLINE_LABEL,
        "env": steps.env,
        "held_out": {
            "how": steps.held_out,
            "episodes": int(np.unique(test.episode_id).shape[0]),
            "rows": len(test),
        },
        "model": {
            "states": model.n_states,
            "horizon": steps.horizon,
            "k": steps.k,
            "cost": steps.cost,
        },
        "budgets": list(budgets),
        "bootstrap": bootstrap,
        "threshold_params": params,
        "policies": policies,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (out / "report.md").write_text(offline_markdown(metrics))
    return {
        "evaluation_kind": "offline",
        "label": OFFLINE_LABEL,
        "budgets": list(budgets),
        "helper_model_success": [c["model"]["success"] for c in policies["helper"]["cells"]],
        "never_model_success": [c["model"]["success"] for c in policies["never"]["cells"]],
        "helper_is_success": [
            c["importance_sampling"]["success"] for c in policies["helper"]["cells"]
        ],
        "helper_dr_success": [c["doubly_robust"]["success"] for c in policies["helper"]["cells"]],
    }


def _ci(samples: np.ndarray) -> list[float]:
    if samples.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def offline_markdown(metrics: dict[str, Any]) -> str:
    """Render the offline report as Markdown (every figure labelled an offline estimate)."""
    held = metrics["held_out"]
    lines = [
        f"# HelpSeek offline evaluation: {metrics['env']}",
        "",
        f"**{metrics['label']}.** Held out: {held['how']}, {held['episodes']} episodes / "
        f"{held['rows']} rows; model on the held-out episodes has {metrics['model']['states']} "
        f"states (H={metrics['model']['horizon']}). 95% intervals: bootstrap over episodes "
        f"({metrics['bootstrap']} resamples) for the model-based figures, Wilson at the effective "
        "sample size for importance sampling.",
        "",
        "| policy | C | model-based success [95%] | interventions/ep | weighted IS success [95%] "
        "| IS ESS / matched / episodes | doubly robust [95%] | weighted DR [95%] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pol in metrics["policies"].values():
        for c in pol["cells"]:
            m, s, d = c["model"], c["importance_sampling"], c["doubly_robust"]
            wd = c["weighted_doubly_robust"]
            lines.append(
                f"| {pol['label']} | {c['budget']} | {m['success']:.3f} [{m['ci'][0]:.3f}, "
                f"{m['ci'][1]:.3f}] | {m['interventions_per_episode']:.2f} | {s['success']:.3f} "
                f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | {s['ess']:.1f} / "
                f"{s['matched_episodes']} / {s['episodes']} | {d['success']:.3f} "
                f"[{d['ci'][0]:.3f}, {d['ci'][1]:.3f}] | {wd['success']:.3f} "
                f"[{wd['ci'][0]:.3f}, {wd['ci'][1]:.3f}] |"
            )
    lines += [
        "",
        "Threshold parameters per budget (matched to the helper's predicted rate): "
        f"`{json.dumps(metrics['threshold_params'])}`",
    ]
    return "\n".join(lines) + "\n"
