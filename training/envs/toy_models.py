"""Exact models, experts and weak agents for gymnasium toy_text environments.

Everything here is computed once per adapter from the environment's own model
``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]`` with two absorbing
terminals added: *success* (FrozenLake goal, Taxi drop-off, CliffWalking goal, any other
env's terminal with reward > 0) and *failure* (FrozenLake hole, a CliffWalking cliff step
(reward -100, which the env itself only teleports back from), any other terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ToyModel",
    "build_model",
    "classify",
    "eps_mix",
    "taxi_wallblind_policy",
    "value_iteration",
]

CLIFF_REWARD = -100


@dataclass(frozen=True, eq=False)
class ToyModel:
    """Dense exact model over all n environment states (terminal ones included)."""

    trans: np.ndarray  # (A, n, n) float64   P(next non-terminal state | s, a)
    succ: np.ndarray  # (A, n) float64   P(success terminal | s, a)
    fail: np.ndarray  # (A, n) float64   P(failure terminal | s, a)
    absorbing: np.ndarray  # (n,) bool   states an episode never occupies at a decision point


def classify(family: str, reward: float, terminated: bool) -> str:
    """Classify one transition: 'success', 'failure' or 'continue' (model and live env)."""
    if family == "CliffWalking":
        if reward <= CLIFF_REWARD:
            return "failure"
        return "success" if terminated else "continue"
    if not terminated:
        return "continue"
    if family == "Taxi":
        return "success"
    return "success" if reward > 0 else "failure"


def build_model(p_table: dict, n_states: int, n_actions: int, family: str) -> ToyModel:
    """Turn ``env.P`` into dense (A, n, n) arrays with success / failure terminals."""
    trans = np.zeros((n_actions, n_states, n_states))
    succ = np.zeros((n_actions, n_states))
    fail = np.zeros((n_actions, n_states))
    absorbing = np.ones(n_states, bool)
    for s in range(n_states):
        for a in range(n_actions):
            for prob, ns, reward, term in p_table[s][a]:
                kind = classify(family, float(reward), bool(term))
                if kind == "success":
                    succ[a, s] += prob
                elif kind == "failure":
                    fail[a, s] += prob
                else:
                    trans[a, s, int(ns)] += prob
                if not (term and int(ns) == s):
                    absorbing[s] = False
    return ToyModel(trans, succ, fail, absorbing)


def value_iteration(
    model: ToyModel, gamma: float = 0.99, tol: float = 1e-10, max_iter: int = 20_000
) -> np.ndarray:
    """Deterministic expert: argmax of discounted P(success); returns (n,) int actions.

    The discount (0.99) makes the expert prefer faster routes among equally safe ones; ties
    go to the lowest action index so the expert is reproducible.
    """
    n = model.trans.shape[1]
    v = np.zeros(n)
    for _ in range(max_iter):
        q = model.succ + gamma * (model.trans @ v)  # (A, n)
        new_v = q.max(axis=0)
        if np.max(np.abs(new_v - v)) < tol:
            v = new_v
            break
        v = new_v
    q = model.succ + gamma * (model.trans @ v)
    return np.argmax(q, axis=0).astype(np.int64)


def eps_mix(base: np.ndarray, n_actions: int, eps: float) -> np.ndarray:
    """(n,) deterministic actions or (n, A) policy -> (n, A) policy with eps uniform noise."""
    if base.ndim == 1:
        pol = np.zeros((base.shape[0], n_actions))
        pol[np.arange(base.shape[0]), base] = 1.0
    else:
        pol = base.astype(np.float64)
    return (1.0 - eps) * pol + eps / n_actions


def taxi_wallblind_policy(env: object) -> np.ndarray:
    """Taxi navigator blind to walls: (500, 6) policy.

    It heads for the passenger (then the destination) by picking uniformly among the moves
    that shrink the Manhattan distance, as if there were no walls; a wall makes the move a
    no-op, so it loses time exactly where the map bends. At the target it picks up / drops off.
    """
    taxi = env.unwrapped  # type: ignore[attr-defined]
    locs = taxi.locs
    pol = np.zeros((500, 6))
    for s in range(500):
        row, col, pas, dest = taxi.decode(s)
        tr, tc = locs[pas] if pas < 4 else locs[dest]
        if (row, col) == (tr, tc):
            pol[s, 4 if pas < 4 else 5] = 1.0
            continue
        moves = []
        if tr > row:
            moves.append(0)  # south
        if tr < row:
            moves.append(1)  # north
        if tc > col:
            moves.append(2)  # east
        if tc < col:
            moves.append(3)  # west
        pol[s, moves] = 1.0 / len(moves)
    return pol
