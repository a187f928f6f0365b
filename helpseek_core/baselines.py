"""Baseline intervention policies: one registry, one decision record, budget-safe by construction.

Live use (Phase III evaluation, one episode with a hard budget)::

    policy = make_policy("prm_threshold", tau=0.4)
    ctx = DecisionContext(t=t, steps_left=H - t, remaining=c, cost=1,
                          features=x, prm=prm.score(x[None])[0])
    if policy.decide(ctx, rng): ...   # then charge ``cost`` against ``c``

Batch use (calibration, offline scoring): :class:`BatchContext` + ``decide_batch``.

Every policy returns False when ``remaining < cost``, so a budget is never exceeded. Scores
the policies need come from the context (``prm``: P(success | proceed), P(success | intervene);
``state_index``: the tabular model's index of the state, None / -1 when unknown); a policy that
needs a field that is missing raises :class:`~helpseek_core.errors.InputError`.

Registry (``BASELINES``, ``make_policy(name, **params)``):

=================  ==========================================  ===================================
name               intervene when (and ``remaining >= cost``)  parameters
=================  ==========================================  ===================================
``never``          never                                       —
``always``         always                                      —
``random``         with probability ``rate``                   ``rate`` in [0, 1]
``prm_threshold``  ``prm[0] < tau``                            ``tau``
``gain_threshold`` ``prm[1] - prm[0] > delta``                 ``delta``
``dp_table``       ``solution.policy[t, s, min(c, Cmax)]``     ``solution`` (BudgetedSolution)
=================  ==========================================  ===================================

``dp_table`` clips a remaining budget above Cmax to Cmax (that plan uses at most Cmax units, so
it stays within budget) and proceeds at unknown states and at ``t >= H``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from helpseek_core.errors import BudgetError, InputError, ProbabilityError, ShapeError
from helpseek_core.types import BudgetedSolution

__all__ = [
    "BASELINES",
    "CALIBRATABLE",
    "AlwaysPolicy",
    "BatchContext",
    "DPTablePolicy",
    "DecisionContext",
    "GainThresholdPolicy",
    "NeverPolicy",
    "PRMThresholdPolicy",
    "Policy",
    "RandomPolicy",
    "calibrate",
    "make_policy",
]


def _check_int(name: str, value: int, low: int) -> int:
    if int(value) != value or value < low:
        raise BudgetError(f"DecisionContext: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class DecisionContext:
    """Everything a policy may look at for one decision."""

    t: int  # env step of the decision
    steps_left: int  # H - t
    remaining: int  # budget units left in this episode
    cost: int  # budget units an intervention would cost now
    features: np.ndarray | None = None  # (F,) helper / PRM input
    prm: np.ndarray | None = None  # (2,) P(success | proceed), P(success | intervene)
    state_index: int | None = None  # tabular state index; None = unknown state

    def __post_init__(self) -> None:
        for name, low in (("t", 0), ("steps_left", 0), ("remaining", 0), ("cost", 0)):
            object.__setattr__(self, name, _check_int(name, getattr(self, name), low))
        if self.prm is not None:
            prm = np.asarray(self.prm, np.float64).reshape(-1)
            if prm.shape != (2,):
                raise ShapeError(f"DecisionContext: prm must have shape (2,), got {prm.shape}")
            object.__setattr__(self, "prm", prm)

    @property
    def affordable(self) -> bool:
        """True when the remaining budget covers an intervention."""
        return self.remaining >= self.cost


@dataclass(frozen=True, eq=False)
class BatchContext:
    """B decision contexts as arrays (calibration, offline scoring)."""

    t: np.ndarray  # (B,) int
    steps_left: np.ndarray  # (B,) int
    remaining: np.ndarray  # (B,) int
    cost: np.ndarray | int  # (B,) int (a scalar is broadcast)
    features: np.ndarray | None = None  # (B, F)
    prm: np.ndarray | None = None  # (B, 2)
    state_index: np.ndarray | None = None  # (B,) int, -1 = unknown state
    n: int = field(init=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.t, np.int64).reshape(-1)
        n = t.shape[0]
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "t", t)
        for name in ("steps_left", "remaining", "cost"):
            arr = np.broadcast_to(np.asarray(getattr(self, name), np.int64), (n,))
            if np.any(arr < 0):
                raise BudgetError(f"BatchContext: {name} has a negative entry")
            object.__setattr__(self, name, arr)
        if self.features is not None:
            f = np.asarray(self.features, np.float64)
            if f.ndim != 2 or f.shape[0] != n:
                raise ShapeError(f"BatchContext: features must be (B={n}, F), got {f.shape}")
            object.__setattr__(self, "features", f)
        if self.prm is not None:
            p = np.asarray(self.prm, np.float64)
            if p.shape != (n, 2):
                raise ShapeError(f"BatchContext: prm must be (B={n}, 2), got {p.shape}")
            if not np.all(np.isfinite(p)):
                raise ProbabilityError("BatchContext: prm contains NaN or inf")
            object.__setattr__(self, "prm", p)
        if self.state_index is not None:
            s = np.asarray(self.state_index, np.int64).reshape(-1)
            if s.shape != (n,):
                raise ShapeError(f"BatchContext: state_index must be (B={n},), got {s.shape}")
            object.__setattr__(self, "state_index", s)

    @property
    def affordable(self) -> np.ndarray:
        """(B,) bool: the remaining budget covers an intervention."""
        return self.remaining >= self.cost

    def row(self, i: int) -> DecisionContext:
        """Return the i-th context as a DecisionContext (state index -1 becomes None)."""
        s = (
            None
            if self.state_index is None or self.state_index[i] < 0
            else int(self.state_index[i])
        )
        return DecisionContext(
            t=int(self.t[i]),
            steps_left=int(self.steps_left[i]),
            remaining=int(self.remaining[i]),
            cost=int(np.asarray(self.cost)[i]),
            features=None if self.features is None else self.features[i],
            prm=None if self.prm is None else self.prm[i],
            state_index=s,
        )


@runtime_checkable
class Policy(Protocol):
    """An intervention policy: ``decide`` one context, ``decide_batch`` many."""

    @property
    def name(self) -> str:
        """Registry name of the policy."""
        ...

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """Return True to intervene now (never when ``ctx.remaining < ctx.cost``)."""
        ...

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """(B,) bool decisions."""
        ...


def _need_prm(name: str, prm: np.ndarray | None) -> np.ndarray:
    if prm is None:
        raise InputError(
            f"{name}: the context has no 'prm' scores (P(success | proceed/intervene))"
        )
    return prm


@dataclass(frozen=True)
class NeverPolicy:
    """Never intervene (the base agent alone)."""

    name: ClassVar[str] = "never"

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """Return False: never intervene."""
        return False

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """All False."""
        return np.zeros(ctx.n, bool)


@dataclass(frozen=True)
class AlwaysPolicy:
    """Intervene whenever the budget allows."""

    name: ClassVar[str] = "always"

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """Return True whenever the budget covers the cost."""
        return ctx.affordable

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """Affordable rows."""
        return ctx.affordable.copy()


@dataclass(frozen=True)
class RandomPolicy:
    """Intervene with probability ``rate`` at each affordable decision."""

    rate: float
    name: ClassVar[str] = "random"

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ProbabilityError(f"random: rate must be in [0, 1], got {self.rate!r}")

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """One Bernoulli(rate) draw (drawn even when unaffordable, so streams stay aligned)."""
        return bool(rng.random() < self.rate) and ctx.affordable

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """(B,) Bernoulli(rate) draws, masked by affordability."""
        return (rng.random(ctx.n) < self.rate) & ctx.affordable


@dataclass(frozen=True)
class PRMThresholdPolicy:
    """Intervene when P(success | proceed) < ``tau``."""

    tau: float
    name: ClassVar[str] = "prm_threshold"

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """``prm[0] < tau`` and affordable."""
        return bool(_need_prm(self.name, ctx.prm)[0] < self.tau) and ctx.affordable

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """Vectorised :meth:`decide`."""
        return (_need_prm(self.name, ctx.prm)[:, 0] < self.tau) & ctx.affordable


@dataclass(frozen=True)
class GainThresholdPolicy:
    """Intervene when P(success | intervene) - P(success | proceed) > ``delta``."""

    delta: float
    name: ClassVar[str] = "gain_threshold"

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """``prm[1] - prm[0] > delta`` and affordable."""
        p = _need_prm(self.name, ctx.prm)
        return bool(p[1] - p[0] > self.delta) and ctx.affordable

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """Vectorised :meth:`decide`."""
        p = _need_prm(self.name, ctx.prm)
        return (p[:, 1] - p[:, 0] > self.delta) & ctx.affordable


@dataclass(frozen=True, eq=False)
class DPTablePolicy:
    """Look up the exact solver's table ``solution.policy[t, s, min(c, Cmax)]``."""

    solution: BudgetedSolution
    name: ClassVar[str] = "dp_table"

    def decide_batch(self, ctx: BatchContext, rng: np.random.Generator) -> np.ndarray:
        """Vectorised lookup; unknown states (-1 / None) and ``t >= H`` proceed."""
        table = self.solution.policy
        h, s_count, _ = table.shape
        s = np.full(ctx.n, -1, np.int64) if ctx.state_index is None else ctx.state_index
        if np.any(s >= s_count):
            raise ShapeError(f"dp_table: state_index >= number of states {s_count}")
        ok = (s >= 0) & (ctx.t < h)
        c = np.minimum(ctx.remaining, self.solution.cmax)
        out = np.zeros(ctx.n, bool)
        out[ok] = table[ctx.t[ok], s[ok], c[ok]]
        return out & ctx.affordable

    def decide(self, ctx: DecisionContext, rng: np.random.Generator) -> bool:
        """Lookup for one context."""
        if ctx.state_index is None or not ctx.affordable or ctx.t >= self.solution.policy.shape[0]:
            return False
        if not 0 <= ctx.state_index < self.solution.policy.shape[1]:
            raise ShapeError(f"dp_table: state_index {ctx.state_index} out of range")
        c = min(ctx.remaining, self.solution.cmax)
        return bool(self.solution.policy[ctx.t, ctx.state_index, c])


BASELINES: dict[str, Callable[..., Policy]] = {
    "never": NeverPolicy,
    "always": AlwaysPolicy,
    "random": RandomPolicy,
    "prm_threshold": PRMThresholdPolicy,
    "gain_threshold": GainThresholdPolicy,
    "dp_table": DPTablePolicy,
}
CALIBRATABLE: dict[str, str] = {"random": "rate", "prm_threshold": "tau", "gain_threshold": "delta"}


def make_policy(name: str, **params: Any) -> Policy:
    """Build the baseline ``name`` of ``BASELINES`` with its parameters (see the module table)."""
    if name not in BASELINES:
        raise InputError(f"make_policy: unknown baseline {name!r}; known: {sorted(BASELINES)}")
    try:
        return BASELINES[name](**params)
    except TypeError as exc:
        raise InputError(f"make_policy: bad parameters for {name!r}: {exc}") from exc


def calibrate(name: str, contexts: BatchContext, target_rate: float) -> dict[str, float]:
    """Parameters making ``name``'s intervention rate on ``contexts`` closest to ``target_rate``.

    The rate is ``decide_batch(...).mean()`` over all B contexts, unaffordable ones included
    (they never intervene). Thresholds are exact quantiles of the score over the affordable
    rows: with distinct scores the achieved rate is within 1/(2B) of the target (capped at
    the affordable fraction). Ties move the rate in jumps; the achievable rate closest to the
    target wins, the lower one on an exact draw. Cut points are observed score values
    (``tau = v`` intervenes strictly below v; ``delta = v`` strictly above v). ``random``
    returns ``rate = min(1, target / affordable fraction)`` (exact in expectation).
    Returns ``{param: value}`` for ``make_policy(name, **params)``.
    """
    if name not in CALIBRATABLE:
        raise InputError(
            f"calibrate: {name!r} has no rate parameter; calibratable: {sorted(CALIBRATABLE)}"
        )
    if not 0.0 <= target_rate <= 1.0:
        raise ProbabilityError(f"calibrate: target_rate must be in [0, 1], got {target_rate!r}")
    if contexts.n == 0:
        raise ShapeError("calibrate: no contexts given")
    ok = contexts.affordable
    frac = float(ok.mean())
    if name == "random":
        return {"rate": 1.0 if frac == 0 else min(1.0, target_rate / frac)}
    prm = _need_prm(f"calibrate({name})", contexts.prm)[ok]
    # Score where "intervene" means score > cut: -P(proceed) for prm_threshold, gain otherwise.
    score = -prm[:, 0] if name == "prm_threshold" else prm[:, 1] - prm[:, 0]
    cut = _closest_cut(score, target_rate * contexts.n)
    if name == "prm_threshold":
        return {"tau": float(-cut)}
    return {"delta": float(cut)}


def _closest_cut(score: np.ndarray, target_count: float) -> float:
    """Pick a cut with count(score > cut) closest to target_count (lower count on a draw)."""
    if score.size == 0:
        return np.inf
    u = np.unique(score)  # ascending
    # count above u[j] is the number of entries > u[j]; below u[0] everything is above.
    above = score.size - np.searchsorted(np.sort(score), u, side="right")
    cuts = np.concatenate([u, [np.nextafter(u[0], -np.inf)]])
    counts = np.concatenate([above, [score.size]])
    err = np.abs(counts - target_count)
    best = np.flatnonzero(err == err.min())
    return float(cuts[best[np.argmin(counts[best])]])
