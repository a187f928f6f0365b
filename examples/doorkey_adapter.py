"""A plug-in adapter for MiniGrid DoorKey: a noisy shortest-path planner and its expert.

Nobody in this repository wrote DoorKey and HelpSeek has no built-in adapter for it: this
file is what a user writes to bring such an agent (docs/your-agent.md). Use it as::

    helpseek check-env examples/doorkey_adapter.py:make_adapter:eps=0.6,H=30
    helpseek train --env examples/doorkey_adapter.py:make_adapter:eps=0.6,H=30 --out runs/doorkey

- **Expert:** a breadth-first shortest-path planner over (position, direction, carrying the
  key, door state) on the real grid: fetch the key, unlock the door, walk to the goal. It
  replans from the true state at every step, so it can take over at any point.
- **Weak agent:** the same planner with probability ``1 - eps``, a uniform random action
  (left, right, forward, pickup, drop, toggle) with probability ``eps``.
- **Step limit:** ``H`` (written to ``env.unwrapped.max_steps``); reaching the goal is
  success, the step limit is a time-out.
- **State key:** a stable hash of the layout (walls, the door and its state, where the key
  lies, the goal), the agent's position and direction and whether it carries the key — the
  planner's full input, so the key is Markov and equal situations on different seeds share it.

Only the documented protocol is used: ``training.envs.StepResult`` and ``stable_key``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np

from training.envs import StepResult, stable_key

__all__ = ["DoorKeyAdapter", "make_adapter"]

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
_PLAN_ACTIONS = (LEFT, RIGHT, FORWARD, PICKUP, TOGGLE)  # the planner never drops the key
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # minigrid DIR_TO_VEC: east, south, west, north
_DIR_NAMES = ("east", "south", "west", "north")
_FRONT = ("empty", "wall", "door", "key", "goal")
LOCKED, CLOSED, OPEN = range(3)
Cell = tuple[int, int]
Layout = tuple[frozenset[Cell], Cell, Cell | None, Cell, int]  # walls, door, key, goal, door state


class DoorKeyAdapter:
    """MiniGrid DoorKey + eps-noisy planner (weak) + the planner (expert)."""

    expert = "bfs-planner"

    def __init__(self, env_id: str = "MiniGrid-DoorKey-5x5-v0", eps: float = 0.6, H: int = 30):
        if not 0.0 <= eps <= 1.0 or H < 1:
            raise ValueError(f"need 0 <= eps <= 1 and H >= 1, got eps={eps}, H={H}")
        self._env = gym.make(env_id)
        self._un: Any = self._env.unwrapped  # minigrid's MiniGridEnv
        self.eps, self.horizon = float(eps), int(H)
        self.agent = f"planner+eps{eps:g}"
        self.spec = ""  # set by make_env to the canonical spec
        self.feature_names = (
            ["t_frac", "x", "y"]
            + [f"dir_{d}" for d in _DIR_NAMES]
            + [
                "carrying_key",
                "door_locked",
                "door_open",
                "key_dx",
                "key_dy",
                "door_dx",
                "door_dy",
                "goal_dx",
                "goal_dy",
                "plan_frac",
            ]
            + [f"front_{c}" for c in _FRONT]
        )
        self._plans: dict[tuple[object, ...], tuple[int, int]] = {}
        self._cached: Layout | None = None  # _layout() of the current step
        self._t = 0

    # -- reading the real grid ---------------------------------------------------------------
    def _layout(self) -> Layout:
        """(walls, door cell, key cell or None if carried, goal cell, door state)."""
        if self._cached is not None:
            return self._cached
        walls: set[tuple[int, int]] = set()
        door = goal = (0, 0)
        key, state = None, LOCKED
        for i in range(self._un.width):
            for j in range(self._un.height):
                cell = self._un.grid.get(i, j)
                if cell is None:
                    continue
                if cell.type == "wall":
                    walls.add((i, j))
                elif cell.type == "door":
                    door = (i, j)
                    state = OPEN if cell.is_open else LOCKED if cell.is_locked else CLOSED
                elif cell.type == "key":
                    key = (i, j)
                elif cell.type == "goal":
                    goal = (i, j)
        self._cached = (frozenset(walls), door, key, goal, state)
        return self._cached

    def _plan(self) -> tuple[int, int]:
        """(first action, length) of a shortest plan to the goal from the true state."""
        walls, door, key, goal, door_state = self._layout()
        x, y = (int(v) for v in self._un.agent_pos)
        start = (x, y, int(self._un.agent_dir), self._un.carrying is not None, door_state)
        memo = (walls, door, key, goal, start)
        if memo in self._plans:
            return self._plans[memo]
        first: dict[tuple[int, int, int, bool, int], int] = {start: -1}
        queue = deque([(start, 0)])
        best = (LEFT, 10**6)  # no plan (cannot happen in DoorKey): turn and try again
        while queue:
            (x, y, d, carry, ds), depth = queue.popleft()
            fx, fy = x + _DIRS[d][0], y + _DIRS[d][1]
            on_key = key is not None and not carry and (fx, fy) == key
            for a in _PLAN_ACTIONS:
                nxt = (x, y, d, carry, ds)
                if a in (LEFT, RIGHT):
                    nxt = (x, y, (d + (1 if a == RIGHT else -1)) % 4, carry, ds)
                elif a == FORWARD:
                    if (fx, fy) == goal:
                        best = (first[(x, y, d, carry, ds)] if depth else a, depth + 1)
                        queue.clear()
                        break
                    blocked = (fx, fy) in walls or on_key or ((fx, fy) == door and ds != OPEN)
                    if not blocked:
                        nxt = (fx, fy, d, carry, ds)
                elif a == PICKUP and on_key:
                    nxt = (x, y, d, True, ds)
                elif a == TOGGLE and (fx, fy) == door and (ds != LOCKED or carry):
                    nxt = (x, y, d, carry, CLOSED if ds == OPEN else OPEN)
                if nxt not in first:
                    first[nxt] = first[(x, y, d, carry, ds)] if depth else a
                    queue.append((nxt, depth + 1))
        if len(self._plans) > 200_000:
            self._plans.clear()
        self._plans[memo] = best
        return best

    # -- the EnvAdapter protocol -------------------------------------------------------------
    def reset(self, seed: int, dynamics_seed: int | None = None) -> None:
        """Start layout ``seed`` (DoorKey's dynamics are deterministic)."""
        self._env.reset(seed=int(seed))
        self._un.max_steps = self.horizon
        self._t, self._cached = 0, None

    def state_key(self) -> int:
        """Stable hash of the layout (walls, door and its state, key, goal) and the agent."""
        walls, door, key, goal, door_state = self._layout()
        un = self._un
        return stable_key(
            "doorkey",
            tuple(sorted(walls)),
            door,
            door_state,
            key,
            goal,
            tuple(int(v) for v in un.agent_pos),
            int(un.agent_dir),
            un.carrying is not None,
        )

    def features(self) -> np.ndarray:
        """(22,) float32: clock, pose, key / door state, offsets to key, door and goal, plan."""
        walls, door, key, goal, door_state = self._layout()
        un = self._un
        w, h = un.width, un.height
        x, y = (int(v) for v in un.agent_pos)
        f = np.zeros(len(self.feature_names), np.float32)
        f[0], f[1], f[2] = self._t / self.horizon, x / w, y / h
        f[3 + int(un.agent_dir)] = 1.0
        f[7] = un.carrying is not None
        f[8], f[9] = door_state == LOCKED, door_state == OPEN
        kx, ky = key if key is not None else (x, y)
        f[10:16] = [
            (kx - x) / w,
            (ky - y) / h,
            (door[0] - x) / w,
            (door[1] - y) / h,
            (goal[0] - x) / w,
            (goal[1] - y) / h,
        ]
        f[16] = min(self._plan()[1], self.horizon) / self.horizon
        front = un.grid.get(*un.front_pos)
        kind = "empty" if front is None else front.type
        f[17 + (_FRONT.index(kind) if kind in _FRONT else 0)] = 1.0
        return f

    def text(self) -> str:
        """One-sentence rendering of the state and the clock."""
        _, door, key, goal, door_state = self._layout()
        un = self._un
        x, y = (int(v) for v in un.agent_pos)
        where = "you carry it" if key is None else f"it lies at column {key[0]}, row {key[1]}"
        state = ("locked", "closed", "open")[door_state]
        return (
            f"DoorKey: you are at column {x}, row {y}, facing {_DIR_NAMES[int(un.agent_dir)]}; "
            f"the key: {where}; the door at column {door[0]}, row {door[1]} is {state}; "
            f"the goal is at column {goal[0]}, row {goal[1]}. Step {self._t} of {self.horizon}."
        )

    def weak_action(self, rng: np.random.Generator) -> int:
        """The planner's action, or a uniform random one with probability eps."""
        if rng.random() < self.eps:
            return int(rng.integers(6))
        return self._plan()[0]

    def expert_action(self) -> int:
        """The planner's action."""
        return self._plan()[0]

    def step(self, action: int) -> StepResult:
        """Step the real env; reaching the goal is success, the step limit a time-out."""
        _, reward, terminated, truncated, _ = self._un.step(int(action))
        self._t, self._cached = self._t + 1, None
        if terminated:
            return StepResult(terminated=True, truncated=False, success=float(reward) > 0)
        return StepResult(terminated=False, truncated=bool(truncated), success=False)


def make_adapter(
    env: str = "MiniGrid-DoorKey-5x5-v0", eps: float = 0.6, H: int = 30
) -> DoorKeyAdapter:
    """The factory ``--env examples/doorkey_adapter.py:make_adapter:eps=0.6,H=30`` calls."""
    return DoorKeyAdapter(env, eps=eps, H=H)
