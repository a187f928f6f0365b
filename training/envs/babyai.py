"""Adapter for minigrid BabyAI levels with the BabyAI bot as expert.

- Expert: ``minigrid.utils.baby_ai_bot.BabyAIBot`` built right after each reset and told the
  action really executed every step (``bot.replan(action)``), so it can take over at any step.
- Weak agents (``weak=`` in the spec):
  ``explore`` (default) acts uniformly at random (over left/right/forward/pickup/drop/toggle)
  while the bot's plan is exploratory — it does not yet know where its target is — and
  follows the bot otherwise, with ``eps`` extra uniform noise (default 0.4);
  ``eps`` follows the bot with uniform noise ``eps`` everywhere (default 0.5).
- Step limit: ``limit`` x the bot's own episode length on that seed + 2 (default 2x), set on
  ``env.unwrapped.max_steps`` after every reset; ``horizon`` reports it for the episode.
- A ``toggle`` on a box destroys it; the bot raises ``DisappearedBoxError``: that is a
  terminal failure (so is any other bot failure, counted in ``bot_errors``).
- State key: ``key=grid`` (default) hashes (seed, full grid encoding, agent pose, carried
  object, the bot's visibility mask) — equal situations collide, different bot knowledge does
  not; ``key=history`` hashes (seed, action history) — exactly Markov, but rarely repeats.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium as gym
import numpy as np

from training.envs.base import EnvSpecError, StepResult, stable_key

__all__ = ["BabyAIAdapter"]

_ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
_FRONT = ("empty", "wall", "door", "key", "ball", "box")
_MISSIONS = ("goto", "pickup", "putnext", "open", "sequence")
_N_RANDOM = 6  # the weak agent never says "done"


def _mission_kind(instr: object) -> str:
    name = type(instr).__name__
    return {
        "GoToInstr": "goto",
        "PickupInstr": "pickup",
        "PutNextInstr": "putnext",
        "OpenInstr": "open",
    }.get(name, "sequence")


class BabyAIAdapter:
    """A BabyAI level + weak agent + BabyAI bot (see the module docstring)."""

    expert = "babyai-bot"

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        weak: str = "explore",
        eps: float | None = None,
        limit: float = 2.0,
        key: str = "grid",
        spec: str = "",
    ) -> None:
        from minigrid.utils.baby_ai_bot import BabyAIBot, DisappearedBoxError

        self._bot_cls, self._box_error = BabyAIBot, DisappearedBoxError
        self.spec = spec or env_id
        try:
            self._env = gym.make(env_id, **env_kwargs)
        except Exception as exc:
            raise EnvSpecError(f"env spec {self.spec!r}: cannot build: {exc}") from exc
        if weak not in ("explore", "eps"):
            raise EnvSpecError(
                f"env spec {self.spec!r}: unknown weak agent {weak!r} (explore | eps)"
            )
        if key not in ("grid", "history"):
            raise EnvSpecError(f"env spec {self.spec!r}: key must be grid or history, got {key!r}")
        if limit <= 0:
            raise EnvSpecError(f"env spec {self.spec!r}: limit must be > 0, got {limit}")
        self._un = self._env.unwrapped
        self.weak = weak
        self.eps = float(eps if eps is not None else (0.4 if weak == "explore" else 0.5))
        self.agent = f"{weak}+eps{self.eps:g}" if weak == "explore" else f"eps{self.eps:g}"
        self.limit, self.key_mode = float(limit), key
        self.horizon = int(self._un.max_steps)
        self.bot_errors = 0
        self._bot_len: dict[int, int] = {}
        self.feature_names = (
            ["t_frac", "x", "y"]
            + [f"dir_{d}" for d in range(4)]
            + ["carrying", "exploring", "seen_frac", "plan_depth"]
            + [f"front_{c}" for c in _FRONT]
            + [f"mission_{m}" for m in _MISSIONS]
            + [f"last_{a}" for a in _ACTIONS]
        )
        self._seed = 0
        self._t = 0
        self._history: list[int] = []
        self._bot: Any = None
        self._suggest = 0

    def _quiet_reset(self, seed: int) -> None:
        # BabyAI's level generator prints every rejected sample ("Sampling rejected: ...").
        with contextlib.redirect_stdout(io.StringIO()):
            self._env.reset(seed=int(seed))

    def bot_episode_length(self, seed: int) -> int:
        """Count the steps the bot alone needs on task ``seed`` (cached; capped by the level)."""
        if seed not in self._bot_len:
            self._quiet_reset(seed)
            bot = self._bot_cls(self._env)
            action, steps = bot.replan(), 0
            while True:
                _, _, term, trunc, _ = self._un.step(action)
                steps += 1
                if term or trunc:
                    break
                action = bot.replan(action)
            self._bot_len[seed] = steps
        return self._bot_len[seed]

    # -- the EnvAdapter protocol -------------------------------------------------------------
    def reset(self, seed: int, dynamics_seed: int | None = None) -> None:
        """Start task ``seed`` (BabyAI dynamics are deterministic: ``dynamics_seed`` unused)."""
        limit = int(self.limit * self.bot_episode_length(seed)) + 2
        self._quiet_reset(seed)
        self._un.max_steps = limit
        self.horizon = limit
        self._seed, self._t, self._history = int(seed), 0, []
        self._bot = self._bot_cls(self._env)
        self._suggest = int(self._bot.replan())

    def _exploring(self) -> bool:
        return any(sg.is_exploratory() for sg in self._bot.stack)

    def state_key(self) -> int:
        """Stable key: (seed, grid, pose, carried, bot knowledge) or (seed, action history)."""
        if self.key_mode == "history":
            return stable_key("babyai-h", self._seed, tuple(self._history))
        un = self._un
        carried = (un.carrying.type, un.carrying.color) if un.carrying else None
        return stable_key(
            "babyai-g",
            self._seed,
            un.grid.encode(),
            tuple(int(v) for v in un.agent_pos),
            int(un.agent_dir),
            carried,
            np.packbits(self._bot.vis_mask),
        )

    def features(self) -> np.ndarray:
        """(29,) float32: clock, pose, carrying, bot-plan flags, front cell, mission, last action."""
        un = self._un
        f = np.zeros(len(self.feature_names), np.float32)
        f[0] = self._t / self.horizon
        f[1], f[2] = un.agent_pos[0] / un.width, un.agent_pos[1] / un.height
        f[3 + int(un.agent_dir)] = 1.0
        f[7] = un.carrying is not None
        f[8] = self._exploring()
        f[9] = float(self._bot.vis_mask.mean())
        f[10] = len(self._bot.stack) / 10.0
        front = un.grid.get(*un.front_pos)
        kind = "empty" if front is None else front.type
        f[11 + (_FRONT.index(kind) if kind in _FRONT else 0)] = 1.0
        f[17 + _MISSIONS.index(_mission_kind(un.instrs))] = 1.0
        if self._history:
            f[22 + self._history[-1]] = 1.0
        return f

    def text(self) -> str:
        """Mission, what the agent sees (relative positions), carried object, recent actions."""
        un = self._un
        image = un.gen_obs()["image"]
        from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT

        seen = []
        for i in range(image.shape[0]):
            for j in range(image.shape[1]):
                obj = IDX_TO_OBJECT[int(image[i, j, 0])]
                if obj in ("key", "ball", "box", "door"):
                    ahead, right = image.shape[1] - 1 - j, i - image.shape[0] // 2
                    side = (
                        f"{abs(right)} {'right' if right > 0 else 'left'}" if right else "straight"
                    )
                    seen.append(
                        f"{IDX_TO_COLOR[int(image[i, j, 1])]} {obj} ({ahead} ahead, {side})"
                    )
        carry = f"{un.carrying.color} {un.carrying.type}" if un.carrying else "nothing"
        recent = ", ".join(_ACTIONS[a] for a in self._history[-3:]) or "none"
        return (
            f"Mission: {un.mission}. You see: {', '.join(seen) or 'no objects'}. "
            f"You carry {carry}. Last actions: {recent}. Step {self._t} of {self.horizon}."
        )

    def weak_action(self, rng: np.random.Generator) -> int:
        """Random while exploring (explore agent), else the bot's action with eps noise."""
        if (self.weak == "explore" and self._exploring()) or rng.random() < self.eps:
            return int(rng.integers(_N_RANDOM))
        return self._suggest

    def expert_action(self) -> int:
        """Return the bot's suggestion for the current state."""
        return self._suggest

    def step(self, action: int) -> StepResult:
        """Step the env, then re-sync the bot with the action really taken."""
        _, reward, term, trunc, _ = self._un.step(int(action))
        self._t += 1
        self._history.append(int(action))
        if term:
            return StepResult(terminated=True, truncated=False, success=float(reward) > 0)
        try:
            self._suggest = int(self._bot.replan(int(action)))
        except self._box_error:
            return StepResult(terminated=True, truncated=False, success=False)
        except Exception:  # the bot gave up on a state it cannot plan from: a failure too
            self.bot_errors += 1
            return StepResult(terminated=True, truncated=False, success=False)
        return StepResult(terminated=False, truncated=bool(trunc), success=False)
