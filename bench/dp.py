"""Exact budgeted DP: solve time, peak memory and throughput vs transitions, Cmax and H.

    python bench/dp.py [--quick] [--json] [--repeat 2]
    python bench/dp.py --typed [--repeat 2]     # 2 intervention types, Cmax 5 each, 1M transitions

Throughput = distinct transitions (nnz of P0 + P1) x (Cmax + 1) x H / seconds. Each model is
a random sparse MDP: S states, ``d`` successors per (state, action) plus success / failure
terminals. In the same run, on the same model:

- ``ours64`` / ``ours32``: ``solve_budgeted`` in float64 / float32 (values, policy AND usage);
- ``ours32v``: float32 with ``with_usage=False`` (values and policy, like the baseline);
- ``straight``: the backward induction a user would write by hand — float64, one scipy
  sparse-dense product per step and action over all budgets, values and policy only;
- ``mdptoolbox``: pymdptoolbox ``FiniteHorizon`` on the explicit budget-augmented MDP
  ((s, c) states + one absorbing terminal, k = 1), small sizes only; its values must agree.

Peak memory is tracemalloc's peak of a separate float32 solve (numpy buffers, incl. the
(H, S, C) bool policy). The machine is shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np
import scipy
import scipy.sparse as sp

from helpseek_core.budgeted import solve_budgeted
from helpseek_core.types import TabularModel

D = 5  # successors per (state, action)


def random_model(nnz: int, horizon: int, k: int = 1, cost: int = 1, seed: int = 0) -> TabularModel:
    """A random sparse model with about ``nnz`` transitions over both actions."""
    rng = np.random.default_rng(seed)
    n_s = max(nnz // (2 * D), 2)
    mats, succ, fail = [], np.zeros((2, n_s)), np.zeros((2, n_s))
    for a in range(2):
        rows = np.repeat(np.arange(n_s), D)
        cols = rng.integers(0, n_s, n_s * D)
        w = rng.random((n_s, D))
        term = rng.random((n_s, 2)) * [0.02 * (1 + 2 * a), 0.02]  # the expert succeeds more
        w *= (1 - term.sum(axis=1, keepdims=True)) / w.sum(axis=1, keepdims=True)
        mats.append(sp.csr_matrix((w.ravel(), (rows, cols)), shape=(n_s, n_s)))
        succ[a] = term[:, 0]
        fail[a] = np.maximum(1 - mats[a].sum(axis=1).A1 - succ[a], 0.0)  # exact row sums
    start = np.zeros(n_s)
    start[:10] = 0.1 if n_s >= 10 else 0
    if n_s < 10:
        start[0] = 1.0
    return TabularModel(np.arange(n_s), (mats[0], mats[1]), succ, fail, start, horizon, k, cost)


def straightforward(model: TabularModel, cmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Textbook float64 backward induction: V (S, C) at t = 0 and the policy (H, S, C)."""
    s_n, h, k, cost, c_n = model.n_states, model.horizon, model.k, model.cost, cmax + 1
    p0, p1 = model.trans
    succ0, succ1 = model.succ[0][:, None], model.succ[1][:, None]
    values: list[np.ndarray | None] = [np.zeros((s_n, c_n)) for _ in range(h + k)]  # V[t]
    policy = np.zeros((h, s_n, c_n), dtype=bool)
    for t in range(h - 1, -1, -1):
        q0 = succ0 + p0 @ values[t + 1]
        q1 = np.full((s_n, c_n), -np.inf)
        q1[:, cost:] = succ1 + (p1 @ values[t + k])[:, : c_n - cost]  # budget shifted by cost
        policy[t] = q1 > q0 + 1e-12
        values[t] = np.where(policy[t], q1, q0)
        if t + k + 1 < len(values):
            values[t + k + 1] = None  # free the layers no longer read
    return values[0], policy  # type: ignore[return-value]


def mdptoolbox_values(model: TabularModel, cmax: int) -> np.ndarray:
    """pymdptoolbox FiniteHorizon on the budget-augmented MDP (k = 1); V (S, C) at t = 0."""
    import mdptoolbox.mdp
    import mdptoolbox.util

    s_n, c_n, cost = model.n_states, cmax + 1, model.cost
    n = s_n * c_n + 1
    term = n - 1
    mats, rewards = [], np.zeros((n, 2))
    for a in (0, 1):
        m = sp.coo_matrix(model.trans[a])
        rows, cols, vals = [], [], []
        for c in range(c_n):
            c2 = c - cost * a
            if c2 < 0:  # not affordable: straight to the terminal, heavily penalised
                rows.append(np.arange(s_n) * c_n + c), cols.append(np.full(s_n, term))
                vals.append(np.ones(s_n))
                rewards[np.arange(s_n) * c_n + c, a] = -10.0
                continue
            rows += [m.row * c_n + c, np.arange(s_n) * c_n + c]
            cols += [m.col * c_n + c2, np.full(s_n, term)]
            vals += [m.data, model.succ[a] + model.fail[a]]
            rewards[np.arange(s_n) * c_n + c, a] = model.succ[a]
        rows.append([term]), cols.append([term]), vals.append([1.0])
        mats.append(
            sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
            )
        )
    # pymdptoolbox 4.0b3 validates sparse P in O(n^2) memory (``P >= 0`` and row sums of shape
    # (n, 1) minus (n,) both go dense): 215 GiB at n = 170,001. Skip its check above 5,000
    # augmented states (TabularModel already checked the same rows).
    check = mdptoolbox.util.check
    if n > 5_000:
        mdptoolbox.util.check = lambda *_: None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter(
                "ignore"
            )  # it warns (and prints) that discount 1 may not converge
            fh = mdptoolbox.mdp.FiniteHorizon(mats, rewards, 1.0, model.horizon)
            fh.run()
    finally:
        mdptoolbox.util.check = check
    return fh.V[:-1, 0].reshape(s_n, c_n)


REPEATS = 2


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Best wall time of REPEATS runs (the machine is shared: the minimum is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run_case(nnz: int, cmax: int, horizon: int, with_toolbox: bool, with_memory: bool) -> dict:
    model = random_model(nnz, horizon)
    nnz_real = model.trans[0].nnz + model.trans[1].nnz
    work = nnz_real * (cmax + 1) * horizon
    row: dict = {"nnz": nnz_real, "states": model.n_states, "cmax": cmax, "H": horizon}
    t64, s64 = timed(lambda: solve_budgeted(model, cmax))
    v64, pol64 = s64.value0, s64.policy  # type: ignore[attr-defined]
    del s64
    t32, s32 = timed(lambda: solve_budgeted(model, cmax, dtype=np.float32))
    diff32 = float(np.abs(v64 - s32.value0).max())  # type: ignore[attr-defined]
    del s32
    t32v, _ = timed(lambda: solve_budgeted(model, cmax, dtype=np.float32, with_usage=False))
    tst, (v_st, pol_st) = timed(lambda: straightforward(model, cmax))  # type: ignore[misc]
    row.update(
        ours64_s=round(t64, 3),
        ours32_s=round(t32, 3),
        ours32v_s=round(t32v, 3),
        straight_s=round(tst, 3),
        ours64_ups=work / t64,
        ours32_ups=work / t32,
        ours32v_ups=work / t32v,
        straight_ups=work / tst,
        ratio64=tst / t64,
        ratio32=tst / t32,
        ratio32v=tst / t32v,
        max_diff_straight=float(np.abs(v64 - v_st).max()),
        max_diff_f32=diff32,
        policy_equal=bool(np.array_equal(pol64, pol_st)),
    )
    del pol64, pol_st
    if with_memory:
        row["ours32_peak_mb"] = round(
            peak_mb(lambda: solve_budgeted(model, cmax, dtype=np.float32)), 1
        )
    if with_toolbox:
        ttb, v_tb = timed(lambda: mdptoolbox_values(model, cmax))
        row.update(
            mdptoolbox_s=round(ttb, 3),
            mdptoolbox_ups=work / ttb,
            ratio_toolbox64=ttb / t64,
            max_diff_toolbox=float(np.abs(v64 - v_tb).max()),
        )
    return row


def cases(quick: bool) -> list[tuple[int, int, int, bool]]:
    """(nnz, cmax, H, with pymdptoolbox)."""
    if quick:
        return [(10_000, 4, 50, True), (100_000, 16, 50, False), (1_000_000, 16, 20, False)]
    return [
        (10_000, 4, 50, True),
        (10_000, 16, 200, True),
        (100_000, 16, 200, True),  # pymdptoolbox: 170,001 augmented states
        (1_000_000, 16, 200, False),  # the target point
        (1_000_000, 1, 200, False),
        (3_000_000, 16, 50, False),
    ]


def typed_case(nnz: int = 1_000_000, cmax: int = 5, horizon: int = 200) -> dict:
    """``solve_typed`` with 2 types on the bench model: type a = its expert, type b = a second
    random expert (seed 1) over the same states and the same proceed dynamics (both k = 1), so
    each type's part is the ``nnz``-transition bench model; beside it ``solve_budgeted`` on
    type a alone over the same number of budget cells ((Cmax + 1)^2 - 1)."""
    from helpseek_core.typed import TypedModel, solve_typed

    a = random_model(nnz, horizon)
    other = random_model(nnz, horizon, seed=1)
    b = TabularModel(
        a.state_keys,
        (a.trans[0], other.trans[1]),
        np.stack([a.succ[0], other.succ[1]]),
        np.stack([a.fail[0], other.fail[1]]),
        a.start,
        horizon,
        1,
        1,
    )
    typed = TypedModel((a, b), ("a", "b"))
    t2, sol = timed(lambda: solve_typed(typed, [cmax, cmax]))
    cells = (cmax + 1) ** 2
    t1, _ = timed(lambda: solve_budgeted(a, cells - 1))
    return {
        "nnz_per_type": a.trans[0].nnz + a.trans[1].nnz,
        "nnz_distinct": a.trans[0].nnz + a.trans[1].nnz + b.trans[1].nnz,
        "states": a.n_states,
        "H": horizon,
        "cmax": [cmax, cmax],
        "typed_s": round(t2, 3),
        "one_type_same_cells_s": round(t1, 3),
        "success_at_cmax": float(sol.success[cmax, cmax]),  # type: ignore[attr-defined]
        "peak_mb": round(peak_mb(lambda: solve_typed(typed, [cmax, cmax])), 1),
    }


def fmt(x: float) -> str:
    return f"{x:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small cases")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--repeat", type=int, default=2, help="runs per timing; the best counts")
    parser.add_argument("--typed", action="store_true", help="2 types, Cmax 5 each, 1M transitions")
    ns = parser.parse_args()
    global REPEATS
    REPEATS = max(1, ns.repeat)
    load_before = round(os.getloadavg()[0], 2)
    if ns.typed:
        row = typed_case()
        row["load_average_before"] = load_before
        row["load_average_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps({**row, "repeats": REPEATS, "machine": f"{os.cpu_count()} CPUs"}))
        return
    rows = []
    for nnz, cmax, horizon, toolbox in cases(ns.quick):
        row = run_case(nnz, cmax, horizon, toolbox, with_memory=True)
        rows.append(row)
        if not ns.json:
            print(f"done nnz={row['nnz']} cmax={cmax} H={horizon}", flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "repeats": REPEATS,
        "load_average_before": load_before,
        "load_average_after": round(os.getloadavg()[0], 2),
        "throughput": "nnz(P0)+nnz(P1) x (Cmax+1) x H / s",
    }
    if ns.json:
        print(json.dumps({**meta, "results": rows}))
        return
    head = (
        f"{'nnz':>9} {'S':>7} {'Cmax':>4} {'H':>4} | {'ours32 s':>8} {'upd/s':>8} {'MB':>5} | "
        f"{'32v s':>6} {'upd/s':>8} | {'ours64 s':>8} {'upd/s':>8} | "
        f"{'straight s':>10} {'upd/s':>8} | {'x32':>5} {'x32v':>5} {'x64':>5} | "
        f"{'toolbox s':>9} {'diff':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        tb = (
            f"{r['mdptoolbox_s']:>9.2f} {r['max_diff_toolbox']:>6.0e}"
            if "mdptoolbox_s" in r
            else f"{'-':>9} {'-':>6}"
        )
        print(
            f"{r['nnz']:>9} {r['states']:>7} {r['cmax']:>4} {r['H']:>4} | "
            f"{r['ours32_s']:>8.2f} {fmt(r['ours32_ups']):>8} {r['ours32_peak_mb']:>5.0f} | "
            f"{r['ours32v_s']:>6.2f} {fmt(r['ours32v_ups']):>8} | "
            f"{r['ours64_s']:>8.2f} {fmt(r['ours64_ups']):>8} | "
            f"{r['straight_s']:>10.2f} {fmt(r['straight_ups']):>8} | "
            f"{r['ratio32']:>5.2f} {r['ratio32v']:>5.2f} {r['ratio64']:>5.2f} | {tb}"
        )
    worst = max(max(r["max_diff_straight"], r.get("max_diff_toolbox", 0.0)) for r in rows)
    print(
        "\nx32 / x32v / x64 = straightforward time / ours (> 1: ours faster). ours32 and ours64 "
        "also compute usage; ours32v and straightforward compute values and policy only. "
        "MB = tracemalloc peak of the ours32 solve."
    )
    print(
        f"largest |V_ours64 - V_other| over all cases: {worst:.1e}; "
        f"largest |V_32 - V_64|: {max(r['max_diff_f32'] for r in rows):.1e}; "
        f"policies equal to straightforward: {all(r['policy_equal'] for r in rows)}"
    )
    print(
        f"best of {REPEATS} runs per timing; {meta['machine']}; numpy {meta['numpy']}, scipy {meta['scipy']}; "
        f"load average (1 min) before / after: {load_before} / {meta['load_average_after']}"
    )


if __name__ == "__main__":
    main()
