"""The one episode runner: weak agent acts, an intervention lets the expert act for k steps.

Used by collection (random interventions at probability p) and, later, by live evaluation of
any policy: pass ``decide`` as a callback that sees a :class:`DecisionContext` and returns
whether to intervene. Each decision point yields one step-log row (docs/design.md §3): a proceed
row covers one env step, an intervene row covers the whole k-step macro action (fewer steps
if the episode ends first) and charges ``cost`` budget units.

Several intervention types (``rungs``): each :class:`Rung` has its own k, cost, budget and
actor (the expert, or the expert with ``expert_eps`` uniform noise). ``decide`` then returns
an int (0 proceed, i = type i; ``True`` still means type 1), the context carries every type's
remaining budget, and each intervene row logs its 0-based ``intervention_type``. Random
collection intervenes with probability p and picks the type uniformly among the affordable
ones. Without ``rungs`` the runner is exactly the one-type runner above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from helpseek_core.types import StepLog
from training.envs.base import EnvAdapter

__all__ = [
    "DecisionContext",
    "Decide",
    "EpisodeResult",
    "Rung",
    "episode_rng",
    "episodes_to_steplog",
    "run_episode",
]


class DecisionContext:
    """What a policy sees at a decision point. ``text`` is rendered only when read."""

    __slots__ = (
        "_adapter",
        "features",
        "remaining_budget",
        "remaining_per_type",
        "state_key",
        "steps_left",
        "t",
    )

    def __init__(
        self,
        adapter: EnvAdapter,
        t: int,
        steps_left: int,
        remaining_budget: int | None,
        features: np.ndarray,
        state_key: int,
        remaining_per_type: tuple[int | None, ...] | None = None,
    ) -> None:
        self._adapter = adapter
        self.t = t  # env step at the decision point
        self.steps_left = steps_left  # H - t
        self.remaining_budget = remaining_budget  # None when the budget is unlimited
        self.features = features  # (F,) float32
        self.state_key = state_key  # stable int64
        self.remaining_per_type = remaining_per_type  # (m,) with several types, else None

    @property
    def text(self) -> str:
        """Text rendering of the current state (valid only inside the ``decide`` call)."""
        return self._adapter.text()


Decide = Callable[[DecisionContext], bool | int]  # False/True, or an action index with rungs
"""A policy: the context -> intervene (bool) or, with several types, the action (int)."""

N_RANDOM_ACTIONS = 6  # a noisy expert's uniform actions when the adapter has no n_actions


@dataclass(frozen=True)
class Rung:
    """One intervention type as the runner plays it: k steps of a (possibly noisy) expert."""

    k: int = 1  # env steps per intervention
    cost: int = 1  # units of this type's own budget per intervention
    expert_eps: float = 0.0  # each of its steps is a uniform random action with this probability

    def __post_init__(self) -> None:
        if self.k < 1 or self.cost < 0 or not 0.0 <= self.expert_eps <= 1.0:
            raise ValueError(f"Rung: need k >= 1, cost >= 0 and 0 <= expert_eps <= 1, got {self}")


@dataclass(eq=False)
class EpisodeResult:
    """One episode: its step-log columns (one entry per decision point) and its outcome."""

    episode_id: int
    task_id: int
    success: bool = False
    truncated: bool = False
    steps: int = 0  # env steps taken
    interventions: int = 0  # intervene decisions
    expert_steps: int = 0  # env steps the expert took
    t: list[int] = field(default_factory=list)
    state_key: list[int] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    text: list[str] | None = None
    action: list[int] = field(default_factory=list)
    cost: list[int] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)
    next_state_key: list[int] = field(default_factory=list)
    behavior_p: list[float] = field(default_factory=list)
    intervention_type: int = 0
    types: list[int] | None = None  # per row, with several types (else ``intervention_type``)
    by_type: list[int] | None = None  # (m,) interventions of each type, with several types

    def __len__(self) -> int:
        return len(self.t)


def episode_rng(root_seed: int, task_seed: int, index: int) -> tuple[np.random.Generator, int]:
    """Per-episode (rng, dynamics_seed) from (root seed, task seed, episode index).

    Depends on nothing else (not the worker, not the order shards run in), so the same
    seeds always give the same rows.
    """
    ss = np.random.SeedSequence([int(root_seed), int(task_seed), int(index)])
    child, dyn = ss.spawn(2)
    return np.random.default_rng(child), int(dyn.generate_state(1, np.uint32)[0])


def run_episode(
    adapter: EnvAdapter,
    seed: int,
    decide: Decide | float,
    *,
    rng: np.random.Generator,
    k: int = 1,
    cost: int = 1,
    budget: int | None = None,
    intervention_type: int = 0,
    dynamics_seed: int | None = None,
    episode_id: int = 0,
    record_text: bool = False,
    rungs: Sequence[Rung] | None = None,
    budgets: Sequence[int | None] | None = None,
) -> EpisodeResult:
    """Run one episode of task ``seed`` and return its rows and outcome.

    ``decide`` is either a probability p (intervene at random with probability p at each
    decision point; ``behavior_p`` = p) or a callback ``decide(ctx) -> bool`` (``behavior_p``
    records the decision taken, 0 or 1). With a ``budget``, a decision point whose remaining
    budget is below ``cost`` proceeds without asking. ``rng`` drives the weak agent's noise and
    the random interventions; ``dynamics_seed`` the environment's own transitions.

    ``rungs`` (several intervention types, module docstring) replace ``k``, ``cost``,
    ``budget`` and ``intervention_type``; ``budgets`` holds one budget per rung (None:
    unlimited). An action whose type the remaining budget cannot pay for proceeds.
    """
    if rungs is not None:
        return _run_typed(
            adapter, seed, decide, rng, list(rungs), budgets, dynamics_seed, episode_id, record_text
        )
    if k < 1 or cost < 0:
        raise ValueError(f"run_episode: need k >= 1 and cost >= 0, got k={k}, cost={cost}")
    adapter.reset(seed, dynamics_seed)
    horizon = adapter.horizon
    ep = EpisodeResult(int(episode_id), int(seed), intervention_type=intervention_type)
    if record_text:
        ep.text = []
    remaining = budget
    t = 0
    while True:
        key = adapter.state_key()
        feats = adapter.features()
        if ep.text is not None:
            ep.text.append(adapter.text())
        if remaining is not None and remaining < cost:
            intervene, prop = False, 0.0
        elif callable(decide):
            ctx = DecisionContext(adapter, t, horizon - t, remaining, feats, key)
            intervene = bool(decide(ctx))
            prop = float(intervene)
        else:
            prop = float(decide)
            intervene = bool(rng.random() < prop)
        if intervene:
            dur = 0
            for _ in range(k):
                res = adapter.step(adapter.expert_action())
                dur += 1
                if res.terminated or res.truncated:
                    break
            ep.interventions += 1
            ep.expert_steps += dur
            if remaining is not None:
                remaining -= cost
        else:
            res = adapter.step(adapter.weak_action(rng))
            dur = 1
        ep.t.append(t)
        ep.state_key.append(key)
        ep.features.append(feats)
        ep.action.append(int(intervene))
        ep.cost.append(cost if intervene else 0)
        ep.duration.append(dur)
        ep.next_state_key.append(adapter.state_key())
        ep.behavior_p.append(prop)
        t += dur
        if res.terminated or res.truncated:
            ep.success = bool(res.terminated and res.success)
            ep.truncated = bool(res.truncated and not res.terminated)
            ep.steps = t
            return ep


def _run_typed(
    adapter: EnvAdapter,
    seed: int,
    decide: Decide | float,
    rng: np.random.Generator,
    rungs: list[Rung],
    budgets: Sequence[int | None] | None,
    dynamics_seed: int | None,
    episode_id: int,
    record_text: bool,
) -> EpisodeResult:
    """:func:`run_episode` with several intervention types (see its docstring)."""
    m = len(rungs)
    if not rungs:
        raise ValueError("run_episode: rungs must hold at least one intervention type")
    remaining: list[int | None] = [None] * m if budgets is None else list(budgets)
    if len(remaining) != m:
        raise ValueError(f"run_episode: need one budget per rung ({m}), got {len(remaining)}")
    n_random = int(getattr(adapter, "n_actions", N_RANDOM_ACTIONS))
    adapter.reset(seed, dynamics_seed)
    horizon = adapter.horizon
    ep = EpisodeResult(int(episode_id), int(seed), types=[], by_type=[0] * m)
    if record_text:
        ep.text = []
    t = 0
    while True:
        key = adapter.state_key()
        feats = adapter.features()
        if ep.text is not None:
            ep.text.append(adapter.text())
        afford = [i for i, r in enumerate(rungs) if (c := remaining[i]) is None or c >= r.cost]
        action, prop = 0, 0.0
        if not afford:
            pass  # nothing left to ask for: proceed without asking
        elif callable(decide):
            ctx = DecisionContext(adapter, t, horizon - t, None, feats, key, tuple(remaining))
            action = int(decide(ctx))  # True -> 1
            if not 0 <= action <= m:
                raise ValueError(f"run_episode: decide returned {action}, expected 0..{m}")
            if action and action - 1 not in afford:
                action = 0  # the budget cannot pay for it: proceed
            prop = float(action > 0)
        else:
            prop = float(decide)
            if rng.random() < prop:
                pick = int(rng.integers(len(afford))) if len(afford) > 1 else 0
                action = afford[pick] + 1
        if action:
            rung = rungs[action - 1]
            dur = 0
            for _ in range(rung.k):
                a = adapter.expert_action()
                if rung.expert_eps > 0 and rng.random() < rung.expert_eps:
                    a = int(rng.integers(n_random))
                res = adapter.step(a)
                dur += 1
                if res.terminated or res.truncated:
                    break
            ep.interventions += 1
            ep.by_type[action - 1] += 1  # type: ignore[index]
            ep.expert_steps += dur
            left = remaining[action - 1]
            if left is not None:
                remaining[action - 1] = left - rung.cost
        else:
            res = adapter.step(adapter.weak_action(rng))
            dur = 1
        ep.t.append(t)
        ep.state_key.append(key)
        ep.features.append(feats)
        ep.action.append(int(action > 0))
        ep.types.append(action - 1 if action else 0)  # type: ignore[union-attr]
        ep.cost.append(rungs[action - 1].cost if action else 0)
        ep.duration.append(dur)
        ep.next_state_key.append(adapter.state_key())
        ep.behavior_p.append(prop)
        t += dur
        if res.terminated or res.truncated:
            ep.success = bool(res.terminated and res.success)
            ep.truncated = bool(res.truncated and not res.terminated)
            ep.steps = t
            return ep


def _types(ep: EpisodeResult) -> np.ndarray:
    """(rows,) int8 intervention type per row: the per-row list, else the episode's one type."""
    types = ep.types if ep.types is not None else [ep.intervention_type] * len(ep)
    return np.asarray(types, np.int8)


def episodes_to_steplog(episodes: Sequence[EpisodeResult], n_features: int) -> StepLog:
    """Stack episodes into one :class:`StepLog` (text kept only if every episode has it)."""
    lens = np.array([len(e) for e in episodes], dtype=np.int64)
    n = int(lens.sum())

    def rep(values: list[object], dtype: type) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=dtype), lens)

    def cat(name: str, dtype: type) -> np.ndarray:
        return np.fromiter((v for e in episodes for v in getattr(e, name)), dtype=dtype, count=n)

    done = np.zeros(n, bool)
    if n:
        done[np.cumsum(lens) - 1] = True
    feats = (
        np.stack([f for e in episodes for f in e.features]).astype(np.float32)
        if n
        else np.zeros((0, n_features), np.float32)
    )
    has_text = bool(episodes) and all(e.text is not None for e in episodes)
    return StepLog(
        episode_id=rep([e.episode_id for e in episodes], np.int64),
        task_id=rep([e.task_id for e in episodes], np.int64),
        t=cat("t", np.int32),
        state_key=cat("state_key", np.int64),
        features=feats,
        action=cat("action", np.int8),
        intervention_type=np.concatenate([_types(e) for e in episodes] or [np.zeros(0, np.int8)]),
        cost=cat("cost", np.int16),
        duration=cat("duration", np.int16),
        next_state_key=cat("next_state_key", np.int64),
        done=done,
        truncated=done & rep([e.truncated for e in episodes], np.bool_),
        success=rep([e.success for e in episodes], np.bool_),
        behavior_p=cat("behavior_p", np.float32),
        text=tuple(s for e in episodes for s in (e.text or ())) if has_text else None,
    )
