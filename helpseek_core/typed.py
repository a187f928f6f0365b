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
from helpseek_core.errors import BudgetError, ShapeError
from helpseek_core.types import TabularModel

__all__ = ["TypedModel", "TypedSolution", "label_typed", "solve_typed"]


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
                and np.array_equal(p.leaf_mask[:, 0], first.leaf_mask[:, 0])
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


def solve_typed(
    model: TypedModel, cmax: Sequence[int], *, tie_tol: float = 1e-12
) -> TypedSolution:
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
            q = _shift(q, axis, cost) if t + k < h else np.where(
                _affordable(grid, axis, cost), q, -np.inf
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
