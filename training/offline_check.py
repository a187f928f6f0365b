"""Report: ``train --log`` against ``train --env`` on the same log, and offline vs live figures.

``python -m training.offline_check --out DIR [--env SPEC ...]`` for each environment:

1. ``helpseek train --env SPEC`` (collects, trains, evaluates live on held-out seeds);
2. ``helpseek train --log DIR/env/run/log`` on that run's own step log, no environment: the
   helper must be the same (its weights are compared) and its report is the offline estimate;
3. a table of each policy's offline estimates (model-based and weighted IS, with intervals)
   beside its live success, and whether the live figure lies inside each interval.

Writes ``DIR/offline_check.md`` and ``.json``. Takes minutes per environment (live evaluation).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluate import EvalConfig
from training.pipeline import ModelConfig, TrainConfig, default_config
from training.pipeline import main as train_main

__all__ = ["compare", "main"]

ENVS = ("taxi", "FrozenLake-v1:map_name=4x4,is_slippery=true,H=30,weak=eps,eps=0.5")


def compare(live_dir: Path, log_dir: Path) -> dict[str, Any]:
    """Rows of (policy, C, live success [CI], offline model-based, offline IS, inside?)."""
    live = json.loads((live_dir / "report" / "metrics.json").read_text())
    off = json.loads((log_dir / "report" / "metrics.json").read_text())
    with np.load(live_dir / "helper.npz") as a, np.load(log_dir / "helper.npz") as b:
        same = sorted(a.files) == sorted(b.files) and all(
            np.array_equal(a[k], b[k]) for k in a.files
        )
    rows = []
    for name, pol in off["policies"].items():
        if name == "never":
            cells = {c: live["reference"]["never"] for c in off["budgets"]}
        elif name in live["policies"]:
            cells = {c["budget"]: c for c in live["policies"][name]["cells"]}
        else:
            continue
        for c in pol["cells"]:
            lv = cells.get(c["budget"])
            if lv is None:
                continue
            m, s, d = c["model"], c["importance_sampling"], c["doubly_robust"]
            rows.append(
                {
                    "policy": pol["label"],
                    "budget": c["budget"],
                    "live": lv["success"],
                    "live_ci": lv.get("ci"),
                    "model": m["success"],
                    "model_ci": m["ci"],
                    "model_inside": bool(m["ci"][0] <= lv["success"] <= m["ci"][1]),
                    "is": s["success"],
                    "is_ci": s["ci"],
                    "is_ess": s["ess"],
                    "is_inside": bool(s["ci"][0] <= lv["success"] <= s["ci"][1]),
                    "dr": d["success"],
                    "dr_ci": d["ci"],
                    "dr_inside": bool(d["ci"][0] <= lv["success"] <= d["ci"][1]),
                    "wdr": c["weighted_doubly_robust"]["success"],
                    "wdr_ci": c["weighted_doubly_robust"]["ci"],
                    "wdr_inside": bool(
                        c["weighted_doubly_robust"]["ci"][0]
                        <= lv["success"]
                        <= c["weighted_doubly_robust"]["ci"][1]
                    ),
                }
            )
    return {"env": live["env"], "same_helper_weights": bool(same), "rows": rows}


def _md(results: list[dict[str, Any]]) -> str:
    est = (
        ("model", "model-based"),
        ("is", "weighted IS"),
        ("dr", "doubly robust"),
        ("wdr", "weighted DR"),
    )
    lines = [
        "# train --log vs train --env, offline estimates vs live",
        "",
        "Each offline cell: estimate [95% interval]; *in* = the live success lies inside it.",
        "",
    ]
    for r in results:
        rows = r["rows"]
        cover = ", ".join(
            f"{label} {sum(x[k + '_inside'] for x in rows)}/{len(rows)}" for k, label in est
        )
        head = " | ".join(f"{label} [95%] | in?" for _, label in est)
        lines += [
            f"## {r['env']}",
            "",
            f"helper weights identical (train --log vs train --env): "
            f"**{r['same_helper_weights']}**; live inside the interval: {cover}",
            "",
            f"| policy | C | live [95%] | {head} |",
            "|---|---|---|" + "---|---|" * len(est),
        ]
        for x in rows:
            live = f"{x['live']:.3f}"
            if x.get("live_ci"):
                live += f" [{x['live_ci'][0]:.3f}, {x['live_ci'][1]:.3f}]"
            cells = " | ".join(
                f"{x[k]:.3f} [{x[k + '_ci'][0]:.3f}, {x[k + '_ci'][1]:.3f}] | "
                f"{'yes' if x[k + '_inside'] else 'NO'}"
                for k, _ in est
            )
            lines.append(f"| {x['policy']} | {x['budget']} | {live} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    """Run the check for every ``--env``; write the report; return its path."""
    ap = argparse.ArgumentParser(prog="python -m training.offline_check")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--env", action="append", help="env spec (repeatable); default Taxi, FrozenLake"
    )
    ap.add_argument("--episodes", type=int, default=300, help="live episodes per cell")
    ap.add_argument("--budgets", default="0,1,2,3")
    ns = ap.parse_args(argv)
    budgets = tuple(int(b) for b in ns.budgets.split(","))
    results = []
    for i, env in enumerate(ns.env or ENVS):
        base = replace(
            default_config(ns.out / f"env{i}" / "live"),
            env=env,
            cmax=max(budgets),
            model=ModelConfig(lagrangian=False, offline_rl=False),
            progress=False,
            evaluation=EvalConfig(episodes=ns.episodes, n_tasks=ns.episodes, budgets=budgets),
        )
        live = train_main(base)
        off = train_main(
            TrainConfig(
                **{
                    **base.__dict__,
                    "env": None,
                    "log": live / "run" / "log",
                    "out": ns.out / f"env{i}" / "log",
                }
            )
        )
        results.append(compare(live, off))
    (ns.out / "offline_check.json").write_text(json.dumps(results, indent=2, default=float))
    (ns.out / "offline_check.md").write_text(_md(results))
    print(_md(results))
    return ns.out / "offline_check.md"


if __name__ == "__main__":
    main()
