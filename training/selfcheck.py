"""Self-checks every evaluation report opens with: the run must agree with itself.

A live evaluation can contradict the exact solver in ways no single table shows (the k > 1
horizon bug did: "helper/oracle 2.904"). :func:`self_checks` tests the metrics of
:func:`training.evaluate.evaluate` against what must hold, each at a 99.9 % level:

- **prediction**: the live DP oracle's success at each C lies within its interval of the
  solver's predicted success (exact model only: an estimated model predicts its own MDP);
- **oracle monotone**: the live oracle's success does not fall as C grows (beyond the two
  cells' intervals);
- **nothing beats the optimum**: no budgeted policy's live success exceeds the exact
  optimum's predicted success at the same C beyond its own interval;
- **helper monotone**: more budget never means clearly worse helper success (all budgets
  evaluated, above the trained Cmax included);
- **budget**: no episode of a budgeted policy used more than its budget.

Each check is ``{"name", "ok": True | False | None (not applicable), "detail"}``.
:func:`enforce_checks` prints them and raises :class:`SelfCheckError` (exit 2 from the CLI)
when one failed, unless the user asked ``--allow-failed-checks``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from helpseek_core.metrics import wilson_interval

__all__ = ["Z_999", "SelfCheckError", "enforce_checks", "format_checks", "self_checks"]

Z_999 = 3.2905  # two-sided 99.9 % normal quantile


class SelfCheckError(ValueError):
    """A report's self-check failed (the report is written; the message says which)."""


def _se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def _cells(metrics: dict[str, Any], name: str) -> dict[int, dict[str, Any]]:
    pol = metrics["policies"].get(name)
    return {} if pol is None else {c["budget"]: c for c in pol["cells"]}


def _monotone(cells: dict[int, dict[str, Any]]) -> tuple[bool, str]:
    """(ok, detail): success never drops between consecutive budgets beyond both intervals."""
    bs = sorted(b for b in cells if b is not None)
    drops = []
    for b1, b2 in zip(bs, bs[1:], strict=False):
        c1, c2 = cells[b1], cells[b2]
        gap = c1["success"] - c2["success"]
        allow = Z_999 * math.hypot(
            _se(c1["success"], c1["episodes"]), _se(c2["success"], c2["episodes"])
        )
        if gap > allow:
            drops.append(
                f"C={b1} {c1['success']:.3f} -> C={b2} {c2['success']:.3f} (allowed drop {allow:.3f})"
            )
    series = ", ".join(f"C={b}: {cells[b]['success']:.3f}" for b in bs)
    return not drops, ("; ".join(drops) if drops else series)


def self_checks(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the checks of the module docstring on an evaluation's metrics dict."""
    out: list[dict[str, Any]] = []
    pred = metrics.get("oracle_prediction") or {}
    oracle = _cells(metrics, "dp_oracle")
    exact = metrics.get("oracle_kind") == "exact" and bool(pred)

    if exact and oracle:
        bad, parts = [], []
        for b_s, p in pred.items():
            c = oracle.get(int(b_s))
            if c is None:
                continue
            z = (c["success"] - p["success"]) / _se(p["success"], c["episodes"])
            parts.append(
                f"C={b_s}: predicted {p['success']:.3f}, live {c['success']:.3f} (z={z:+.2f})"
            )
            if abs(z) > Z_999:
                bad.append(parts[-1])
        out.append(
            {
                "name": "solver's predicted success = live DP oracle (99.9 % interval)",
                "ok": not bad,
                "detail": "; ".join(bad or parts),
            }
        )
    else:
        out.append(
            {
                "name": "solver's predicted success = live DP oracle (99.9 % interval)",
                "ok": None,
                "detail": "no exact-model oracle: an estimated model predicts its own MDP",
            }
        )

    if oracle:
        ok, detail = _monotone(oracle)
        out.append({"name": "DP oracle success non-decreasing in C", "ok": ok, "detail": detail})

    if exact:
        above = []
        for name, pol in metrics["policies"].items():
            for c in pol["cells"]:
                p = pred.get(str(c["budget"]))
                if p is None or c["budget"] is None:
                    continue
                lo, _ = wilson_interval(round(c["success"] * c["episodes"]), c["episodes"], 0.999)
                if lo > p["success"] + 1e-9:
                    above.append(
                        f"{pol.get('label', name)} at C={c['budget']}: {c['success']:.3f} "
                        f"(99.9 % low {lo:.3f}) > optimum {p['success']:.3f}"
                    )
        out.append(
            {
                "name": "no policy above the exact optimum beyond its interval",
                "ok": not above,
                "detail": "; ".join(above) or "every budgeted cell at or below the optimum",
            }
        )

    helper = _cells(metrics, "helper")
    if helper:
        ok, detail = _monotone(helper)
        cmax = metrics.get("cmax")
        top = max(b for b in helper if b is not None)
        if cmax is not None:
            detail += f" (trained Cmax {cmax}, evaluated up to C={top})"
        out.append({"name": "helper success non-decreasing in C", "ok": ok, "detail": detail})

    viol = {
        pol.get("label", name): sum(c["violations"] for c in pol["cells"])
        for name, pol in metrics["policies"].items()
    }
    bad_v = {k: v for k, v in viol.items() if v}
    out.append(
        {
            "name": "no budget violation",
            "ok": not bad_v,
            "detail": ", ".join(f"{k}: {v} episodes" for k, v in bad_v.items())
            or "0 violating episodes",
        }
    )
    return out


def format_checks(checks: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: a one-line verdict, then one bullet per check (failures first)."""
    failed = [c for c in checks if c["ok"] is False]
    passed = sum(1 for c in checks if c["ok"] is True)
    head = (
        f"**{len(failed)} self-check(s) FAILED** ({passed} passed)"
        if failed
        else f"All {passed} applicable self-checks passed."
    )
    order = sorted(checks, key=lambda c: {False: 0, True: 1, None: 2}[c["ok"]])
    mark = {False: "FAILED", True: "ok", None: "n/a"}
    return [head, ""] + [f"- **{mark[c['ok']]}** {c['name']}: {c['detail']}" for c in order]


def enforce_checks(metrics: dict[str, Any], report: Path, *, allow: bool = False) -> None:
    """Print the self-checks; raise SelfCheckError on a failure unless ``allow``."""
    checks = metrics.get("self_checks") or []
    failed = [c for c in checks if c["ok"] is False]
    stream = sys.stderr if failed else sys.stdout
    print("[self-checks] " + format_checks(checks)[0].replace("**", ""), file=stream, flush=True)
    for c in failed:
        print(f"[self-checks] FAILED {c['name']}: {c['detail']}", file=stream, flush=True)
    if failed and not allow:
        raise SelfCheckError(
            f"{len(failed)} self-check(s) failed (see the top of {report}); "
            "pass --allow-failed-checks to exit 0 anyway"
        )
