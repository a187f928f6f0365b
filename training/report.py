"""Evaluation metrics and report: ``metrics.json``, ``report.md``, PNG plots (matplotlib, Agg).

:func:`cell_metrics` / :func:`policy_metrics` turn live episode outcomes into the metrics of
:mod:`helpseek_core.metrics`; :func:`targets` judges the issue's targets; :func:`write_report`
writes the files. The dict :func:`training.evaluate.evaluate` returns (``metrics.json`` holds
it verbatim)::

    {"env": str, "budgets": [int], "episodes": int, "seeds": {...}, "cmax": int,
     "reference": {"never": cell, "always": cell},
     "policies": {name: {"label": str, "cells": [cell per budget],
                         "apgr": float, "mean_pgr": float, "cpt": {"50": u, "80": u, "95": u}}},
     "targets": {name: {"met": bool | None, "detail": str}},
     "train_seeds": {"start": int, "n_tasks": int, "cells": {name: {budget: cell}}},
     "notes": [str]}

    cell = {"budget": int | None, "episodes": int, "success": float, "ci": [low, high],
            "interventions_per_episode": float, "decisions_per_episode": float,
            "intervention_rate": float, "pgr": float, "oracle_ratio": float,
            "violations": int}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from helpseek_core import metrics as M
from training.selfcheck import format_checks

__all__ = [
    "PLOT_NAMES",
    "cell_metrics",
    "format_table",
    "manifest_summary",
    "policy_metrics",
    "targets",
    "write_report",
]

PLOT_NAMES = ("success_vs_interventions.png", "success_vs_budget.png")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:.{digits}f}"
    return str(x)


def cell_metrics(out: dict[str, np.ndarray], budget: int | None) -> dict[str, Any]:
    """Per-episode outcome arrays of one (policy, budget) cell -> the cell's metrics."""
    rate = M.success_rate(out["success"])
    return {
        "budget": budget,
        "episodes": int(rate.n),
        "success": rate.value,
        "ci": [rate.low, rate.high],
        "interventions_per_episode": M.interventions_per_episode(out["interventions"]),
        "decisions_per_episode": float(out["decisions"].mean()),
        "intervention_rate": M.intervention_rate(out["interventions"], out["decisions"]),
        "violations": 0 if budget is None else M.budget_violations(out["interventions"], budget),
    }


def policy_metrics(cells: list[dict[str, Any]], never: dict, always: dict) -> dict[str, Any]:
    """Summarise a policy's cells: PGR per cell, APGR, mean PGR and CPT(50/80/95)."""
    s_n, s_a, u_a = never["success"], always["success"], always["interventions_per_episode"]
    for c in cells:
        c["pgr"] = M.pgr(c["success"], s_n, s_a)
    usage = [c["interventions_per_episode"] for c in cells]
    succ = [c["success"] for c in cells]
    ok = u_a > 0
    return {
        "cells": cells,
        "apgr": M.apgr(usage, succ, s_n, s_a, u_a) if ok else float("nan"),
        "mean_pgr": M.mean_pgr(succ, s_n, s_a),
        "cpt": {
            str(int(p * 100)): (M.cpt(usage, succ, s_n, s_a, p) if ok else float("nan"))
            for p in M.CPT_LEVELS
        },
    }


def format_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one row per (policy, budget) with every per-cell metric."""
    head = (
        "| policy | C | success | 95% CI | interventions/ep | rate/decision | PGR | "
        "oracle ratio | violations |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, ref in metrics["reference"].items():
        lines.append(_row(name, ref))
    for name, pol in metrics["policies"].items():
        for cell in pol["cells"]:
            lines.append(_row(pol.get("label", name), cell))
    return head + "\n".join(lines) + "\n"


def _row(name: str, cell: dict[str, Any]) -> str:
    budget = "∞" if cell["budget"] is None else str(cell["budget"])
    lo, hi = cell["ci"]
    return (
        f"| {name} | {budget} | {_fmt(cell['success'])} | [{_fmt(lo)}, {_fmt(hi)}] | "
        f"{_fmt(cell['interventions_per_episode'], 2)} | {_fmt(cell['intervention_rate'])} | "
        f"{_fmt(cell['pgr'], 2)} | {_fmt(cell['oracle_ratio'], 2)} | {cell['violations']} |"
    )


def _headline(metrics: dict[str, Any]) -> str:
    """Success (interventions per episode) per policy and budget: the table a note copies.

    Each cell shows the policy's interventions per episode beside its success, so a reader
    sees that two policies compared at one C spent comparable help.
    """
    budgets = metrics["budgets"]
    head = "| policy | " + " | ".join(f"C={b}" for b in budgets) + " | APGR |\n"
    head += "|---" * (len(budgets) + 2) + "|\n"
    rows = []
    pred = metrics.get("oracle_prediction") or {}
    if pred:
        vals = [
            f"{pred[str(b)]['success']:.3f} ({pred[str(b)]['interventions_per_episode']:.2f})"
            if str(b) in pred
            else "—"
            for b in budgets
        ]
        rows.append("| exact optimum (solver's prediction) | " + " | ".join(vals) + " | |")
    for name, pol in metrics["policies"].items():
        by_b = {c["budget"]: c for c in pol["cells"]}
        vals = [
            f"{_fmt(by_b[b]['success'])} ({_fmt(float(by_b[b]['interventions_per_episode']), 2)})"
            if b in by_b
            else "—"
            for b in budgets
        ]
        rows.append(
            f"| {pol.get('label', name)} | " + " | ".join(vals) + f" | {_fmt(pol['apgr'])} |"
        )
    never, always = metrics["reference"]["never"], metrics["reference"]["always"]
    foot = (
        f"\nnever: {_fmt(never['success'])} [{_fmt(never['ci'][0])}, {_fmt(never['ci'][1])}]; "
        f"always: {_fmt(always['success'])} [{_fmt(always['ci'][0])}, {_fmt(always['ci'][1])}] "
        f"with {_fmt(always['interventions_per_episode'], 2)} interventions/episode.\n"
    )
    return head + "\n".join(rows) + "\n" + foot


def _generalisation(metrics: dict[str, Any]) -> list[str]:
    """Budgets above Cmax, and training seeds vs held-out seeds."""
    lines: list[str] = []
    pol, cmax = metrics["policies"], metrics.get("cmax")
    above = [b for b in metrics["budgets"] if cmax is not None and b > cmax]
    if above and "helper" in pol and "dp_oracle" in pol:
        by = {n: {c["budget"]: c["success"] for c in pol[n]["cells"]} for n in pol}
        lines += [
            "",
            f"## Budgets above the trained Cmax = {cmax}",
            "",
            "The helper's budget input is clipped to Cmax (core encoding): more budget "
            "never asks it about budgets it was not trained on.",
            "",
            "| C | DP oracle | helper |",
            "|---|---|---|",
        ]
        for b in above:
            lines.append(f"| {b} | {_fmt(by['dp_oracle'][b])} | {_fmt(by['helper'][b])} |")
    seen = metrics.get("train_seeds", {}).get("cells") or {}
    if seen:
        lines += [
            "",
            "## Training seeds vs held-out seeds (success)",
            "",
            "| policy | C | training seeds | held-out seeds | drop |",
            "|---|---|---|---|---|",
        ]
        for name, cells in seen.items():
            held = {c["budget"]: c["success"] for c in pol[name]["cells"]}
            for b, c in cells.items():
                h = held[int(b)]
                lines.append(
                    f"| {pol[name]['label']} | {b} | {_fmt(c['success'])} | {_fmt(h)} | "
                    f"{_fmt(c['success'] - h)} |"
                )
    return lines


def _plots(metrics: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    never, always = metrics["reference"]["never"], metrics["reference"]["always"]
    for fname, xkey in zip(PLOT_NAMES, ("interventions_per_episode", "budget"), strict=True):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for name, pol in metrics["policies"].items():
            cells = sorted(pol["cells"], key=lambda c: c[xkey])
            xs = [c[xkey] for c in cells]
            ys = [c["success"] for c in cells]
            err = [
                [c["success"] - c["ci"][0] for c in cells],
                [c["ci"][1] - c["success"] for c in cells],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, capsize=2, label=pol.get("label", name))
        ax.axhline(never["success"], color="grey", ls=":", label="never")
        ax.axhline(always["success"], color="black", ls="--", label="always (unlimited)")
        if xkey == "interventions_per_episode":
            ax.plot([always[xkey]], [always["success"]], "k*", ms=9)
            ax.set_xlabel("interventions per episode")
        else:
            ax.set_xlabel("budget C (interventions per episode)")
        ax.set_ylabel("success rate (95% CI)")
        ax.set_title(metrics["env"], fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(metrics: dict[str, Any], out_dir: Path | str, title: str | None = None) -> Path:
    """Write ``metrics.json``, ``report.md`` and the plots into ``out_dir``; return report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    plots = _plots(metrics, out)
    seeds = metrics["seeds"]
    lines = [
        f"# {title or 'Evaluation'}: {metrics['env']}",
        "",
        "## Self-checks",
        "",
        *format_checks(metrics.get("self_checks") or []),
        "",
        f"Live rollouts on held-out seeds ({seeds['description']}), "
        f"{metrics['episodes']} episodes per cell; helper trained with Cmax = {metrics['cmax']}"
        + (
            f"; calibration searches on training seeds ({seeds['train']})"
            if "train" in seeds
            else ""
        )
        + ". Cells: success (interventions per episode).",
        "",
        "## Success by budget",
        "",
        _headline(metrics),
        "## Targets",
        "",
    ]
    for name, tgt in metrics.get("targets", {}).items():
        met = {True: "met", False: "NOT met", None: "n/a"}[tgt["met"]]
        lines.append(f"- **{name}**: {met} — {tgt['detail']}")
    lines += _generalisation(metrics)
    lines += ["", "## Every cell", "", format_table(metrics), "## Summary per policy", ""]
    lines.append("| policy | APGR | mean PGR | CPT50 | CPT80 | CPT95 |\n|---|---|---|---|---|---|")
    for name, pol in metrics["policies"].items():
        c = pol["cpt"]
        lines.append(
            f"| {pol.get('label', name)} | {_fmt(pol['apgr'])} | {_fmt(pol['mean_pgr'])} | "
            f"{_fmt(c['50'], 2)} | {_fmt(c['80'], 2)} | {_fmt(c['95'], 2)} |"
        )
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    notes = metrics.get("notes")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def targets(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check the issue's targets the metrics can decide (``met`` None: reported, not judged).

    Oracle ratio: budgets up to the trained Cmax (larger budgets are the generalisation
    check, reported separately), and only against an exact-model oracle. PGR margin over the best-calibrated PRM-threshold: budgets
    1..3; where the oracle's own PGR is below 0.2 no policy can meet it (said in the detail).
    """
    pol = metrics["policies"]
    out: dict[str, dict[str, Any]] = {}

    def cells(name: str) -> dict[int, dict[str, Any]]:
        return {c["budget"]: c for c in pol[name]["cells"]} if name in pol else {}

    helper, oracle, prm = cells("helper"), cells("dp_oracle"), cells("prm_threshold")
    cmax = metrics.get("cmax")
    if metrics.get("oracle_kind") != "exact":
        oracle = {}  # an estimated model's table knows no held-out state: no ratio target
    if helper and oracle:
        inside = [b for b in helper if b in oracle and (cmax is None or b <= cmax)]
        ratios = {b: helper[b]["oracle_ratio"] for b in inside}
        out["helper >= 95% of DP oracle success at every budget <= Cmax"] = {
            "met": bool(ratios) and min(ratios.values()) >= 0.95,
            "detail": "ratios " + ", ".join(f"C={b}: {r:.3f}" for b, r in ratios.items()),
        }
        above = [b for b in helper if b in oracle and cmax is not None and b > cmax]
        if above:
            out[f"budgets above Cmax = {cmax} (input clipped to Cmax)"] = {
                "met": None,
                "detail": ", ".join(
                    f"C={b}: helper/oracle {helper[b]['oracle_ratio']:.3f}" for b in above
                ),
            }
    if helper and prm:
        low = [b for b in helper if b in prm and 1 <= b <= 3]
        diffs = {b: helper[b]["pgr"] - prm[b]["pgr"] for b in low}
        reach = {b: oracle[b]["pgr"] for b in low if b in oracle}
        detail = "PGR helper - PRM-threshold " + ", ".join(
            f"C={b}: {d:+.3f}" for b, d in diffs.items()
        )
        if reach:
            detail += "; the oracle's own PGR " + ", ".join(
                f"C={b}: {g:.3f}" for b, g in reach.items()
            )
        out["helper beats PRM-threshold by >= 0.2 PGR at C <= 3"] = {
            "met": bool(diffs) and all(d >= 0.2 for d in diffs.values()),
            "detail": detail,
        }
    if helper:
        always = metrics["reference"]["always"]
        hits = [
            b
            for b, c in helper.items()
            if c["success"] >= 0.9 * always["success"]
            and c["interventions_per_episode"] <= always["interventions_per_episode"] / 4
        ]
        out[">= 90% of always success with <= 1/4 of its interventions"] = {
            "met": bool(hits),
            "detail": (f"met at C in {hits}" if hits else "no budget qualifies")
            + f" (always: {always['success']:.3f} with {always['interventions_per_episode']:.2f}/ep)",
        }
    viol = sum(c["violations"] for p in pol.values() for c in p["cells"])
    out["budget violations = 0"] = {"met": viol == 0, "detail": f"{viol} violating episodes"}
    return out


def manifest_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Condense metrics into the manifest's evaluation summary: success per budget for the helper and references."""
    pol = metrics["policies"]
    per = {
        name: {str(c["budget"]): round(c["success"], 4) for c in p["cells"]}
        for name, p in pol.items()
    }
    return {
        "env": metrics["env"],
        "episodes_per_cell": metrics["episodes"],
        "never": round(metrics["reference"]["never"]["success"], 4),
        "always": round(metrics["reference"]["always"]["success"], 4),
        "success": per,
        "apgr": {name: p["apgr"] for name, p in pol.items()},
        "targets": {k: v["met"] for k, v in metrics["targets"].items()},
        "self_checks": metrics.get("self_checks", []),
    }
