"""A tiny labelled text task for tests and benchmarks (the label hangs on one word).

Each state reads like a short agent observation; whether the door is ``open`` or ``locked``
decides the outcome: the episode succeeds iff the door is open **or** the agent asks for help
(action 1), and intervening is optimal iff the door is locked and budget remains. Colours,
rooms and objects are split between the training and held-out pools, so held-out texts use
words the head never saw — a head must key on the door word to beat chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helpseek_text.train import HelperExamples, PRMExamples

__all__ = ["ToyTask", "door_is_open", "toy_task"]

_COLOURS = (("red", "green", "blue", "yellow", "grey"), ("purple", "orange"))
_ROOMS = (("kitchen", "hall", "cellar", "garden"), ("attic", "library"))
_OBJECTS = (("key", "ball", "box"), ("lamp", "book"))


@dataclass(frozen=True)
class ToyTask:
    """Training and held-out rows of the toy task."""

    train_prm: PRMExamples
    test_prm: PRMExamples
    train_helper: HelperExamples
    test_helper: HelperExamples


def _texts(rng: np.random.Generator, n: int, pool: int) -> tuple[list[str], np.ndarray]:
    open_ = rng.integers(0, 2, n)
    out = []
    for i in range(n):
        colour = rng.choice(_COLOURS[pool])
        room = rng.choice(_ROOMS[pool])
        obj = rng.choice(_OBJECTS[pool])
        door = "open" if open_[i] else "locked"
        out.append(
            f"Step {int(rng.integers(1, 30))}. The agent is in the {colour} {room} carrying a "
            f"{obj}. The door to the goal is {door}."
        )
    return out, open_.astype(np.int64)


def _prm(rng: np.random.Generator, n: int, pool: int) -> PRMExamples:
    texts, open_ = _texts(rng, n, pool)
    actions = rng.integers(0, 2, n)
    return PRMExamples(tuple(texts), actions, ((open_ == 1) | (actions == 1)).astype(float))


def _helper(rng: np.random.Generator, n: int, pool: int, cmax: int) -> HelperExamples:
    texts, open_ = _texts(rng, n, pool)
    c = rng.integers(0, cmax + 1, n)
    left = rng.integers(1, 30, n)
    labels = ((open_ == 0) & (c >= 1)).astype(np.int64)
    return HelperExamples(tuple(texts), c, left, labels)


def toy_task(rng: np.random.Generator, n_train: int, n_test: int, cmax: int = 2) -> ToyTask:
    """Sample the toy task: ``n_train`` training rows and ``n_test`` held-out rows per head."""
    return ToyTask(
        _prm(rng, n_train, 0),
        _prm(rng, n_test, 1),
        _helper(rng, n_train, 0, cmax),
        _helper(rng, n_test, 1, cmax),
    )


def door_is_open(texts: tuple[str, ...] | list[str]) -> np.ndarray:
    """(N,) 1 where the toy text says the door is open (the ground truth of the task)."""
    return np.array([t.rstrip().endswith("is open.") for t in texts], dtype=np.int64)
