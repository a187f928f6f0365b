"""Several intervention types, each with its own k, cost and budget: the exact DP over (t, s, c_1..c_m).

An agent may have a ladder of help — a cheap one-step hint from a noisier expert, a k-step
takeover by the exact expert — each with its own budget. :class:`TypedModel` is the tabular
model with action 0 = proceed and action i = 1 .. m = intervention type i (a macro action of
``k[i-1]`` steps costing ``cost[i-1]`` units of *its own* budget). With one type it is exactly
a :class:`~helpseek_core.types.TabularModel` (:meth:`TypedModel.from_tabular`), and
:func:`solve_typed` then equals :func:`~helpseek_core.budgeted.solve_budgeted`.

The recursion, for a budget vector c = (c_1 .. c_m) and e_i the i-th unit vector::

    Q0[t, s, c] = succ0[s] + sum_s' P0[s, s'] V[t + 1, s', c]
    Qi[t, s, c] = succi[s] + sum_s' Pi[s, s'] V[t + k_i, s', c - cost_i e_i]   (c_i >= cost_i)
    Qi[t, s, c] = succ_steps_i[H - t - 1, s]        when t + k_i >= H (cut by the horizon)
    V[t, s, c]  = max(Q0, Q1, .., Qm),   V[t >= H] = 0

Ties: proceed unless a type is better by more than ``tie_tol``; among types, the lower index
unless a later one is better by more than ``tie_tol``. One backward pass solves every budget
vector up to ``cmax`` at once: the value table of a step is (S, C_1 + 1, .., C_m + 1), one
sparse product per action over all budget vectors, the budget shift applied to the product's
axes. Leaf pairs (``leaf_mask[s, a]``) are valued ``leaf_value[s, a]`` at every t and c.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from helpseek_core.budgeted import check_budget, cut_rewards
from helpseek_core.errors import BudgetError, ShapeError, SolverError
from helpseek_core.model import estimate_model, model_state_keys
from helpseek_core.types import StepLog, TabularModel

__all__ = [
    "TypedModel",
    "TypedPenaltySolution",
    "TypedSolution",
    "estimate_typed",
    "label_typed",
    "search_typed_penalties",
    "solve_typed",
    "solve_typed_penalty",
]


@dataclass(frozen=True, eq=False)
class TypedModel:
    """A tabular model with m intervention types (built from one TabularModel per type).

    Each type's :class:`TabularModel` carries that type's intervene dynamics, k and cost;
    their proceed dynamics, states, start and horizon must be the same (one weak agent).
    """

    parts: tuple[TabularModel, ...]  # (m,) one model per type; action 1 of part i = type i
    names: tuple[str, ...]  # (m,) type names, e.g. ("hint", "takeover")

    def __post_init__(self) -> None:
        where = "TypedModel"
        parts = tuple(self.parts)
        if not parts:
            raise ShapeError(f"{where}: need at least one intervention type")
        names = tuple(str(n) for n in self.names)
        if len(names) != len(parts) or len(set(names)) != len(names):
            raise ShapeError(f"{where}: need one distinct name per type, got {names!r}")
        first = parts[0]
        for i, p in enumerate(parts[1:], start=1):
            same = (
                p.n_states == first.n_states
                and np.array_equal(p.state_keys, first.state_keys)
                and p.horizon == first.horizon
                and np.allclose(p.start, first.start)
                and np.allclose(p.succ[0], first.succ[0])
                and (p.trans[0] != first.trans[0]).nnz == 0
                and np.array_equal(np.asarray(p.leaf_mask)[:, 0], np.asarray(first.leaf_mask)[:, 0])
            )
            if not same:
                raise ShapeError(
                    f"{where}: type {names[i]!r} differs from {names[0]!r} in states, start, "
                    "horizon or proceed dynamics (one weak agent for every type)"
                )
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "names", names)

    @staticmethod
    def from_tabular(model: TabularModel, name: str = "expert") -> TypedModel:
        """Wrap one TabularModel as the one-type model (it solves to exactly the same)."""
        return TypedModel((model,), (name,))

    @property
    def m(self) -> int:
        """Number of intervention types."""
        return len(self.parts)

    @property
    def n_states(self) -> int:
        """Number S of non-terminal states."""
        return self.parts[0].n_states

    @property
    def horizon(self) -> int:
        """H: step limit of an episode."""
        return int(self.parts[0].horizon)

    @property
    def k(self) -> tuple[int, ...]:
        """Steps per intervention, per type."""
        return tuple(int(p.k) for p in self.parts)

    @property
    def cost(self) -> tuple[int, ...]:
        """Budget units per intervention (of its own budget), per type."""
        return tuple(int(p.cost) for p in self.parts)


@dataclass(frozen=True, eq=False)
class TypedSolution:
    """Exact optimum for every budget vector up to ``cmax`` (per type).

    ``policy[t, s, c_1, .., c_m]`` is the action: 0 proceed, i = request type i.
    """

    policy: np.ndarray  # (H, S, C_1+1, .., C_m+1) int8
    value0: np.ndarray  # (S, C_1+1, .., C_m+1) float64   success from (t=0, s, c)
    usage0: np.ndarray  # (m, S, C_1+1, .., C_m+1) float64   expected requests of each type
    success: np.ndarray  # (C_1+1, .., C_m+1) float64   start-distribution success
    usage: np.ndarray  # (m, C_1+1, .., C_m+1) float64   start-distribution requests per type
    cmax: tuple[int, ...]  # (m,)


def _folded(model: TabularModel) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """(P0, P1, reward (2, S), cut reward (k, S)) with the leaves folded in."""
    from helpseek_core.budgeted import folded_rewards

    (p0, p1), reward = folded_rewards(model)
    return p0, p1, reward, cut_rewards(model)


def _shift(arr: np.ndarray, axis: int, cost: int) -> np.ndarray:
    """Out[..., c, ...] = arr[..., c - cost, ...] along ``axis``, -inf where c < cost."""
    out = np.full_like(arr, -np.inf)
    n = arr.shape[axis]
    if cost < n:
        dst = [slice(None)] * arr.ndim
        src = [slice(None)] * arr.ndim
        dst[axis], src[axis] = slice(cost, n), slice(0, n - cost)
        out[tuple(dst)] = arr[tuple(src)]
    return out


def solve_typed(model: TypedModel, cmax: Sequence[int], *, tie_tol: float = 1e-12) -> TypedSolution:
    """Solve the m-type hard-budget problem for every budget vector c <= ``cmax``.

    ``cmax`` holds one non-negative integer per type. Returns the policy, success and the
    expected number of requests of each type (module docstring). Raises BudgetError for a
    bad ``cmax``.
    """
    where = "solve_typed"
    cm = tuple(check_budget(c, where) for c in cmax)
    m = model.m
    if len(cm) != m:
        raise BudgetError(f"{where}: need one Cmax per type ({m}), got {len(cm)}")
    s_n, h = model.n_states, model.horizon
    grid = tuple(c + 1 for c in cm)
    g = int(np.prod(grid))
    folded = [_folded(p) for p in model.parts]
    p0, r0 = folded[0][0], folded[0][2][0]
    kmax = max(model.k)
    slots = kmax + 1
    ring_v = np.zeros((slots, s_n, *grid))
    ring_u = np.zeros((slots, m, s_n, *grid))
    policy = np.zeros((h, s_n, *grid), np.int8)
    bshape = (s_n,) + (1,) * m  # broadcast a (S,) reward over the budget grid
    for t in range(h - 1, -1, -1):
        nv = ring_v[(t + 1) % slots].reshape(s_n, g)
        best = (p0 @ nv).reshape(s_n, *grid) + r0.reshape(bshape)
        nu = ring_u[(t + 1) % slots].transpose(1, 0, *range(2, m + 2)).reshape(s_n, m * g)
        use = (p0 @ nu).reshape(s_n, m, *grid).transpose(1, 0, *range(2, m + 2))
        act = np.zeros((s_n, *grid), np.int8)
        for i, (part, (_, p1, reward, cut)) in enumerate(zip(model.parts, folded, strict=True)):
            k, cost, axis = int(part.k), int(part.cost), 1 + i
            if t + k >= h:
                q = np.broadcast_to(cut[h - t - 1].reshape(bshape), best.shape).copy()
                u = np.zeros((m, s_n, *grid))
            else:
                q = (p1 @ ring_v[(t + k) % slots].reshape(s_n, g)).reshape(s_n, *grid)
                q += reward[1].reshape(bshape)
                src = ring_u[(t + k) % slots].transpose(1, 0, *range(2, m + 2)).reshape(s_n, m * g)
                u = (p1 @ src).reshape(s_n, m, *grid).transpose(1, 0, *range(2, m + 2))
            q = (
                _shift(q, axis, cost)
                if t + k < h
                else np.where(_affordable(grid, axis, cost), q, -np.inf)
            )
            u = np.stack([_shift(u[j], axis, cost) for j in range(m)]) if t + k < h else u
            u[i] += 1.0
            take = q > best + tie_tol
            best = np.where(take, q, best)
            act[take] = i + 1
            use = np.where(take[None], u, use)
        policy[t] = act
        ring_v[t % slots] = best
        ring_u[t % slots] = use
    value0 = ring_v[0].copy()
    usage0 = ring_u[0].copy()
    start = model.parts[0].start
    return TypedSolution(
        policy=policy,
        value0=value0,
        usage0=usage0,
        success=np.tensordot(start, value0, axes=(0, 0)),
        usage=np.tensordot(start, usage0, axes=(0, 1)),
        cmax=cm,
    )


def _affordable(grid: tuple[int, ...], axis: int, cost: int) -> np.ndarray:
    """(1, C_1+1, ..) bool: budget vectors whose type-``axis`` budget covers ``cost``."""
    shape = [1] * (len(grid) + 1)
    shape[axis] = grid[axis - 1]
    return (np.arange(grid[axis - 1]) >= cost).reshape(shape)


def label_typed(
    solution: TypedSolution, model: TypedModel, t: np.ndarray, state_keys: np.ndarray
) -> np.ndarray:
    """Label logged rows: (N, C_1+1, .., C_m+1) int8, the optimal action at every budget vector.

    Rows with a step outside [0, H) or a state unknown to the model raise UnknownStateError
    (as :func:`helpseek_core.labels.label_budgeted` does).
    """
    from helpseek_core.labels import _check, _rows

    where = "label_typed"
    base = model.parts[0]
    t, idx, ok = _rows(base, t, state_keys, where)
    _check(base, t, np.asarray(state_keys), ok, where)
    return solution.policy[t, idx]


def estimate_typed(
    log: StepLog,
    horizon: int,
    k: Sequence[int],
    cost: Sequence[int],
    names: Sequence[str],
    n_min: int = 1,
    leaf_values: np.ndarray | None = None,
) -> TypedModel:
    """Estimate an m-type model from a step log whose intervene rows carry ``intervention_type``.

    Type i's part is :func:`~helpseek_core.model.estimate_model` on the proceed rows plus the
    type-i intervene rows, over the states of the whole log (so every part shares one state
    index) and with the whole log's start distribution. ``leaf_values`` (S, m + 1), aligned
    to ``model_state_keys(log)``: column 0 proceed, column i type i. Raises ShapeError for a
    type index outside 0 .. m-1 or a mismatched ``leaf_values``.
    """
    where = "estimate_typed"
    m = len(names)
    if not (len(k) == len(cost) == m) or m < 1:
        raise ShapeError(
            f"{where}: need one k, cost and name per type, got {len(k)}, {len(cost)}, {m}"
        )
    kind = log.intervention_type.astype(np.int64)
    bad = (log.action == 1) & ((kind < 0) | (kind >= m))
    if bad.any():
        row = int(np.argmax(bad))
        raise ShapeError(
            f"{where}: row {row} has intervention_type {int(kind[row])}, expected 0..{m - 1}"
        )
    keys = model_state_keys(log)
    if leaf_values is not None and np.shape(leaf_values) != (keys.shape[0], m + 1):
        raise ShapeError(
            f"{where}: leaf_values has shape {np.shape(leaf_values)}, expected (S={keys.shape[0]}, {m + 1})"
        )
    first = log.t == 0
    src = np.searchsorted(keys, log.state_key[first])
    start = np.bincount(src, minlength=keys.shape[0]).astype(np.float64)
    start /= start.sum()
    parts = []
    for i in range(m):
        rows = (log.action == 0) | (kind == i)
        leaves = None if leaf_values is None else np.asarray(leaf_values)[:, [0, i + 1]]
        part = estimate_model(
            log.take(rows), horizon, int(k[i]), int(cost[i]), n_min, leaves, state_keys=keys
        )
        parts.append(_with_start(part, start))
    return TypedModel(tuple(parts), tuple(names))


def _with_start(model: TabularModel, start: np.ndarray) -> TabularModel:
    from dataclasses import replace

    return replace(model, start=start)


@dataclass(frozen=True, eq=False)
class TypedPenaltySolution:
    """The paper-style comparator with one penalty per type; budgets met only in expectation."""

    penalties: np.ndarray  # (m,) r_i per request of type i
    policy: np.ndarray  # (H, S) int8   0 proceed, i = type i
    value0: np.ndarray  # (S,) success from t = 0 under the policy
    usage0: np.ndarray  # (m, S) expected requests of each type
    success: float
    usage: np.ndarray  # (m,) start-distribution requests per type


def solve_typed_penalty(
    model: TypedModel, penalties: Sequence[float] | np.ndarray, *, tie_tol: float = 1e-12
) -> TypedPenaltySolution:
    """Optimal policy for P(success) - sum_i r_i E[requests of type i] (no budget state)."""
    rs = np.asarray(penalties, dtype=np.float64)
    m, s_n, h = model.m, model.n_states, model.horizon
    if rs.shape != (m,) or not np.all(np.isfinite(rs)) or np.any(rs < 0):
        raise BudgetError(f"solve_typed_penalty: need {m} finite penalties >= 0, got {penalties!r}")
    folded = [_folded(p) for p in model.parts]
    p0, r0 = folded[0][0], folded[0][2][0]
    slots = max(model.k) + 1
    ring_v = np.zeros((slots, s_n))  # success under the policy
    ring_u = np.zeros((slots, m, s_n))
    policy = np.zeros((h, s_n), np.int8)
    for t in range(h - 1, -1, -1):
        v = r0 + p0 @ ring_v[(t + 1) % slots]
        u = (p0 @ ring_u[(t + 1) % slots].T).T
        obj = v - rs @ u
        act = np.zeros(s_n, np.int8)
        for i, (part, (_, p1, reward, cut)) in enumerate(zip(model.parts, folded, strict=True)):
            kk = int(part.k)
            if t + kk >= h:
                vi, ui = cut[h - t - 1].copy(), np.zeros((m, s_n))
            else:
                vi = reward[1] + p1 @ ring_v[(t + kk) % slots]
                ui = (p1 @ ring_u[(t + kk) % slots].T).T
            ui[i] += 1.0
            oi = vi - rs @ ui
            take = oi > obj + tie_tol
            v, obj = np.where(take, vi, v), np.where(take, oi, obj)
            u = np.where(take[None], ui, u)
            act[take] = i + 1
        policy[t] = act
        ring_v[t % slots], ring_u[t % slots] = v, u
    start = model.parts[0].start
    return TypedPenaltySolution(
        penalties=rs,
        policy=policy,
        value0=ring_v[0].copy(),
        usage0=ring_u[0].copy(),
        success=float(start @ ring_v[0]),
        usage=ring_u[0] @ start,
    )


def search_typed_penalties(
    model: TypedModel, budgets: Sequence[float], *, sweeps: int = 6, atol: float = 1e-6
) -> TypedPenaltySolution:
    """Penalties whose expected requests of each type are <= its budget (coordinate bisection).

    Each sweep sets every r_i in turn to the smallest value (bisection on [0, 2], any r > 1
    never pays) meeting budget i with the other penalties held; sweeps repeat until no
    penalty moves by more than ``atol``. Raises SolverError if a budget is still exceeded.
    """
    b = np.asarray(budgets, dtype=np.float64)
    m = model.m
    if b.shape != (m,) or not np.all(np.isfinite(b)) or np.any(b < 0):
        raise BudgetError(f"search_typed_penalties: need {m} finite budgets >= 0, got {budgets!r}")
    rs = np.zeros(m)
    for _ in range(sweeps):
        moved = 0.0
        for i in range(m):

            def usage(r: float, i: int = i) -> float:
                trial = rs.copy()
                trial[i] = r
                return float(solve_typed_penalty(model, trial).usage[i])

            if usage(0.0) <= b[i] + 1e-9:
                new = 0.0
            else:
                lo, hi = 0.0, 2.0
                while hi - lo > atol:
                    mid = 0.5 * (lo + hi)
                    lo, hi = (lo, mid) if usage(mid) <= b[i] + 1e-9 else (mid, hi)
                new = hi
            moved = max(moved, abs(new - rs[i]))
            rs[i] = new
        if moved <= atol:
            break
    sol = solve_typed_penalty(model, rs)
    over = np.flatnonzero(sol.usage > b + 1e-6)
    if over.size:
        i = int(over[0])
        raise SolverError(
            f"search_typed_penalties: type {model.names[i]!r} uses {sol.usage[i]:.4g} > {b[i]:.4g}"
        )
    return sol
