"""The typed evaluation's report: ``report.json``, a Markdown table, success vs total cost.

Every number carries its interval: success a 95% Wilson interval, cost spent a 95% normal
interval over episodes. The acceptance lines (helper >= 0.95 x the typed oracle; helper >= the
better one-type helper within its interval) are computed in :mod:`training.typed_train` and
printed here as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["format_typed_table", "write_typed_report"]

PLOT_NAME = "success_vs_cost.png"


def _ci(c: dict[str, Any]) -> str:
    return f"{c['success']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"


def format_typed_table(metrics: dict[str, Any]) -> str:
    """Markdown: one row per (policy, budget vector): success, cost spent, requests per type."""
    lines = [
        "| policy | budgets | success [95% CI] | cost spent [95% CI] | requests per type | violations |",
        "|---|---|---|---|---|---|",
    ]
    nv = metrics["never"]
    lines.append(f"| never | 0 | {_ci(nv)} | 0 | — | — |")
    for name, cells in metrics["policies"].items():
        for c in cells:
            req = ", ".join(f"{v:.2f}" for v in c["requests_per_episode"])
            lines.append(
                f"| {name} | {'/'.join(map(str, c['budgets']))} | {_ci(c)} | "
                f"{c['cost_spent']:.2f} [{c['cost_ci'][0]:.2f}, {c['cost_ci'][1]:.2f}] | {req} | "
                f"{sum(c['violations'])} |"
            )
    return "\n".join(lines)


def _acceptance(metrics: dict[str, Any]) -> list[str]:
    out = [
        "| budgets | helper | oracle | ratio | >= 0.95 | best one-type | helper >= it (CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in metrics["summary"]:
        best = "—" if s["best_one_type"] is None else f"{s['best_one_type']:.3f}"
        out.append(
            f"| {'/'.join(map(str, s['budgets']))} | {s['helper']:.3f} | {s['oracle']:.3f} | "
            f"{s['oracle_ratio']:.3f} | {'yes' if s['meets_095'] else 'NO'} | {best} | "
            f"{'—' if s['beats_one_type'] is None else ('yes' if s['beats_one_type'] else 'NO')} |"
        )
    return out


def _plot(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, cells in metrics["policies"].items():
        x = [c["cost_spent"] for c in cells]
        y = [c["success"] for c in cells]
        err = [
            [c["success"] - c["ci"][0] for c in cells],
            [c["ci"][1] - c["success"] for c in cells],
        ]
        bar = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linestyle="none", label=name)
        for c, xi, yi in zip(cells, x, y, strict=True):
            ax.annotate(
                "/".join(map(str, c["budgets"])),
                (xi, yi),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
                color=bar.lines[0].get_color(),
            )
    nv = metrics["never"]
    ax.axhline(nv["success"], color="grey", linestyle=":", label="never")
    ax.set_xlabel("total cost spent per episode (budget units)")
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_typed_report(metrics: dict[str, Any], out_dir: Path | str, title: str) -> Path:
    """Write ``report.json``, ``report.md`` and the plot into ``out_dir``; return report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(metrics, indent=2, default=float))
    _plot(metrics, out / PLOT_NAME)
    md = [
        f"# {title}",
        "",
        f"DP oracle: {metrics.get('oracle_kind', '?')} model.",
        "",
        "## Acceptance",
        "",
        *_acceptance(metrics),
        "",
        "## Every cell",
        "",
        format_typed_table(metrics),
        "",
        f"![success vs cost]({PLOT_NAME})",
        "",
    ]
    if "train_seeds" in metrics:
        md += [
            "## Training seeds (the estimated oracle knows these states)",
            "",
            *_acceptance(metrics["train_seeds"]),
            "",
            format_typed_table(metrics["train_seeds"]),
            "",
        ]
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"
