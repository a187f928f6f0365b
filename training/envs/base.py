"""The environment-adapter contract every Phase I environment implements.

An adapter wraps one real environment (a gymnasium toy_text env, a minigrid BabyAI level, or
your own through a plug-in spec, :mod:`training.envs.plugin`) together with its *weak base
agent* and its *expert*, so that the episode runner (:func:`training.envs.runner.run_episode`)
can ask, at every decision point, "proceed with the weak agent, or let the expert act for k
steps?" without knowing which environment it is. The protocol is :class:`EnvAdapter`;
``helpseek check-env SPEC`` (:mod:`training.check_env`) checks an adapter against it, and
docs/your-agent.md walks through writing one (example: examples/doorkey_adapter.py).

Errors raised here (the training side's environment errors)::

    EnvSpecError (ValueError)     an --env spec that cannot be parsed or built
    └── UnsupportedEnvError       a real environment with no built-in adapter (plug one in)
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "EnvAdapter",
    "EnvSpecError",
    "ExactArrays",
    "StepResult",
    "UnsupportedEnvError",
    "stable_key",
]


class EnvSpecError(ValueError):
    """An environment spec cannot be parsed or built; the message names the spec and why."""


class UnsupportedEnvError(EnvSpecError):
    """No built-in adapter for this environment; the message says what is supported."""


@dataclass(frozen=True)
class StepResult:
    """Outcome of one environment step taken through an adapter."""

    terminated: bool  # reached a terminal state (success or failure)
    truncated: bool  # hit the step limit without terminating
    success: bool  # the episode ended in success (only meaningful when terminated)


def stable_key(*parts: object) -> int:
    """Stable signed int64 hash (blake2b-8) of a tuple of ints, strings, bytes or arrays.

    Equal inputs give equal keys in every process and Python version (no ``hash()``
    randomisation), so keys written by one worker match keys written by another.
    """
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(repr(p).encode())
        h.update(b"\x1f")
    return int(struct.unpack("<q", h.digest())[0])


@dataclass(frozen=True, eq=False)
class ExactArrays:
    """Exact model of a toy_text environment with its weak and expert policies.

    S non-terminal states (index i <-> ``state_keys[i]``, the adapter's ``state_key``), A
    primitive actions; two absorbing terminals, success and failure, are implicit: for every
    (a, s) ``trans[a, s].sum() + succ[a, s] + fail[a, s] == 1``. Policies are stochastic
    (rows sum to 1). Feed them to ``helpseek_core.exact.model_from_policies``.
    """

    state_keys: np.ndarray  # (S,) int64, ascending
    trans: np.ndarray  # (A, S, S) float64   P(s' non-terminal | s, a)
    succ: np.ndarray  # (A, S) float64   P(success terminal | s, a)
    fail: np.ndarray  # (A, S) float64   P(failure terminal | s, a)
    weak_policy: np.ndarray  # (S, A) float64   the base agent's action distribution
    expert_policy: np.ndarray  # (S, A) float64   the expert's action distribution
    start: np.ndarray  # (S,) float64   start-state distribution over all task seeds
    horizon: int  # H, step limit of an episode


@runtime_checkable
class EnvAdapter(Protocol):
    """One environment + weak agent + expert, stepped by the episode runner.

    Call order: ``reset(seed)``, then repeatedly read ``state_key()/features()/text()``,
    pick ``weak_action(rng)`` or ``expert_action()`` and ``step(action)`` until the result is
    terminated or truncated. ``step`` must be given the action really executed, whoever chose
    it, so the expert stays in sync and can take over at any step.

    Determinism: an episode may depend only on ``reset(seed, dynamics_seed)`` and the ``rng``
    handed to ``weak_action`` — no global RNG, clock or ``hash()`` — so collection gives the
    same rows for any number of workers, on any machine.

    Optional members, used when present:

    - ``exact_arrays() -> ExactArrays``: the exact model (transitions, weak and expert
      policies, start distribution) over the non-terminal states, keyed like ``state_key``;
      with it the DP oracle and the PRM report use the exact model instead of an estimate.
    - ``n_actions: int``: ``check-env`` then checks that actions lie in ``range(n_actions)``.
    """

    spec: str  # the canonical spec string that rebuilds this adapter with make_env (set by it)
    feature_names: list[str]  # names of features(), in order; distinct
    horizon: int  # step limit H of the current episode (a positive int, valid after reset)
    agent: str  # name of the weak agent, e.g. "eps0.2", "wallblind"
    expert: str  # name of the expert, e.g. "value-iteration", "babyai-bot"

    def reset(self, seed: int, dynamics_seed: int | None = None) -> None:
        """Start the task instance ``seed``; ``dynamics_seed`` seeds stochastic transitions.

        Set ``horizon`` for this episode here if it depends on the task.
        """
        ...

    def state_key(self) -> int:
        """Stable int64 identity of the current (Markov) state (an ``int``; use ``stable_key``).

        Equal situations should share a key (the model counts visits per key); the key must
        be the same in every process and Python version.
        """
        ...

    def features(self) -> np.ndarray:
        """(F,) float32 finite feature vector of the current state, F = len(feature_names)."""
        ...

    def text(self) -> str:
        """Non-empty text rendering of the current state (the LLM path reads it)."""
        ...

    def weak_action(self, rng: np.random.Generator) -> int:
        """Return the base agent's action (an ``int``), drawing any randomness from ``rng``."""
        ...

    def expert_action(self) -> int:
        """Return the expert's action (an ``int``) in the current state."""
        ...

    def step(self, action: int) -> StepResult:
        """Execute ``action``; return the outcome, ``truncated=True`` once ``horizon`` steps ran.

        ``success`` only with ``terminated``; a time-out is ``truncated``, not a failure state.
        """
        ...
