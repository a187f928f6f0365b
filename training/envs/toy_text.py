"""Adapter for gymnasium toy_text environments (FrozenLake, Taxi, CliffWalking, any Discrete one).

- State key: the environment's own discrete observation (0..n-1). Weak agent and expert are
  stationary functions of it, so it is Markov; the step t is the DP's own index, not part of s.
- Expert: value iteration on P(success) from ``env.P`` (:mod:`training.envs.toy_models`).
- Weak agents (``weak=`` in the spec, plus optional ``eps=`` uniform noise on top):
  ``eps`` (expert + noise, default eps 0.2), ``wallblind`` (Taxi: ignores walls),
  ``noslip`` (plans as if the ice / cliff were not slippery; envs with ``is_slippery``).
- Step limit ``H`` (default: the registry's own, else 100) is enforced by the adapter.
- Transitions are sampled by the real env; ``reset(seed, dynamics_seed)`` seeds its RNG.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from training.envs.base import EnvSpecError, ExactArrays, StepResult, UnsupportedEnvError
from training.envs.toy_models import (
    build_model,
    classify,
    eps_mix,
    taxi_wallblind_policy,
    value_iteration,
)

__all__ = ["ToyTextAdapter", "toy_family"]

_TAXI_NAMES = "RGYB"


def toy_family(env_id: str) -> str:
    """'FrozenLake', 'Taxi', 'CliffWalking' or 'generic' for a gymnasium id."""
    name = env_id.split("-")[0]
    for fam in ("FrozenLake", "Taxi", "CliffWalking"):
        if name.startswith(fam):
            return fam
    return "generic"


class ToyTextAdapter:
    """A toy_text env + weak agent + value-iteration expert (see the module docstring)."""

    expert = "value-iteration"

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        weak: str = "eps",
        eps: float | None = None,
        horizon: int | None = None,
        spec: str = "",
    ) -> None:
        try:
            self._env = gym.make(env_id, **env_kwargs)
        except gym.error.UnregisteredEnv as exc:
            raise UnsupportedEnvError(f"env spec {spec or env_id!r}: cannot build: {exc}") from exc
        except Exception as exc:  # gymnasium raises many types for a bad kwarg
            raise EnvSpecError(f"env spec {spec or env_id!r}: cannot build: {exc}") from exc
        un = self._env.unwrapped
        if not (hasattr(un, "P") and isinstance(self._env.observation_space, gym.spaces.Discrete)):
            raise UnsupportedEnvError(
                f"env spec {spec or env_id!r}: not a toy_text env with a discrete model env.P"
            )
        self.family = toy_family(env_id)
        self.n_states = int(self._env.observation_space.n)
        self.n_actions = int(self._env.action_space.n)
        if horizon is None:
            reg = gym.spec(env_id).max_episode_steps
            horizon = int(reg) if reg else 100
        self.horizon = int(horizon)
        self.spec = spec or env_id
        self.model = build_model(un.P, self.n_states, self.n_actions, self.family)
        self._expert = value_iteration(self.model)
        self.weak_policy = self._weak_policy(env_id, env_kwargs, weak, eps)
        self._weak_cdf = np.cumsum(self.weak_policy, axis=1)
        self._weak_cdf[:, -1] = 1.0
        if weak == "eps":
            self.agent = f"eps{0.2 if eps is None else eps:g}"
        else:
            self.agent = f"{weak}+eps{eps:g}" if eps else weak
        self._table, self.feature_names, self._desc = self._feature_table()
        self._s = 0
        self._t = 0

    def _weak_policy(
        self, env_id: str, env_kwargs: dict[str, Any], weak: str, eps: float | None
    ) -> np.ndarray:
        if weak == "eps":
            return eps_mix(self._expert, self.n_actions, 0.2 if eps is None else eps)
        if weak == "wallblind":
            if self.family != "Taxi":
                raise EnvSpecError(f"env spec {self.spec!r}: weak=wallblind needs Taxi")
            base = taxi_wallblind_policy(self._env)
        elif weak == "noslip":
            if "is_slippery" not in _init_params(self._env):
                raise EnvSpecError(f"env spec {self.spec!r}: weak=noslip needs an is_slippery env")
            calm = gym.make(env_id, **{**env_kwargs, "is_slippery": False}).unwrapped
            base = value_iteration(build_model(calm.P, self.n_states, self.n_actions, self.family))
        else:
            raise EnvSpecError(
                f"env spec {self.spec!r}: unknown weak agent {weak!r} "
                "(choose eps, wallblind (Taxi) or noslip (slippery envs))"
            )
        return eps_mix(base, self.n_actions, eps or 0.0)

    # -- the EnvAdapter protocol -------------------------------------------------------------
    def reset(self, seed: int, dynamics_seed: int | None = None) -> None:
        """Start task ``seed`` (fixes the start state); ``dynamics_seed`` seeds transitions."""
        obs, _ = self._env.reset(seed=int(seed))
        if dynamics_seed is not None:
            self._env.unwrapped.np_random = np.random.default_rng(dynamics_seed)
        self._s, self._t = int(obs), 0

    def state_key(self) -> int:
        """Return the discrete observation itself."""
        return self._s

    def features(self) -> np.ndarray:
        """Per-state features (see ``feature_names``) plus the elapsed fraction t / H."""
        row = self._table[self._s].copy()
        row[-1] = self._t / self.horizon
        return row

    def text(self) -> str:
        """One-sentence description of the state and the clock."""
        return f"{self._desc[self._s]} Step {self._t} of {self.horizon}."

    def weak_action(self, rng: np.random.Generator) -> int:
        """Sample the weak agent's action."""
        return int(np.searchsorted(self._weak_cdf[self._s], rng.random(), side="right"))

    def expert_action(self) -> int:
        """Return the value-iteration expert's action."""
        return int(self._expert[self._s])

    def step(self, action: int) -> StepResult:
        """Step the real env; classify success / failure; enforce the step limit."""
        obs, reward, terminated, _, _ = self._env.unwrapped.step(int(action))
        self._t += 1
        kind = classify(self.family, float(reward), bool(terminated))
        self._s = int(obs)
        if kind != "continue":
            return StepResult(terminated=True, truncated=False, success=kind == "success")
        return StepResult(terminated=False, truncated=self._t >= self.horizon, success=False)

    # -- exact model -------------------------------------------------------------------------
    def exact_arrays(self) -> ExactArrays:
        """Exact model over the non-absorbing states with the weak and expert policies."""
        keep = np.flatnonzero(~self.model.absorbing)
        trans = self.model.trans[:, keep][:, :, keep]
        expert = eps_mix(self._expert, self.n_actions, 0.0)
        start = np.asarray(self._env.unwrapped.initial_state_distrib, np.float64)[keep]
        return ExactArrays(
            state_keys=keep.astype(np.int64),
            trans=trans,
            succ=self.model.succ[:, keep],
            fail=self.model.fail[:, keep],
            weak_policy=self.weak_policy[keep],
            expert_policy=expert[keep],
            start=start / start.sum(),
            horizon=self.horizon,
        )

    # -- features and text -------------------------------------------------------------------
    def _feature_table(self) -> tuple[np.ndarray, list[str], list[str]]:
        n = self.n_states
        un = self._env.unwrapped
        cols: list[np.ndarray] = []
        names: list[str] = []
        desc = [f"State {s} of {n}." for s in range(n)]
        if self.family == "Taxi":
            dec = np.array([list(un.decode(s)) for s in range(n)])
            pos = np.zeros((n, 25))
            pos[np.arange(n), dec[:, 0] * 5 + dec[:, 1]] = 1
            cols += [dec[:, :2] / 4.0, pos, np.eye(5)[dec[:, 2]], np.eye(4)[dec[:, 3]]]
            names += ["taxi_row", "taxi_col"] + [f"taxi_at_{i}" for i in range(25)]
            names += [f"passenger_{c}" for c in (*_TAXI_NAMES, "taxi")]
            names += [f"destination_{c}" for c in _TAXI_NAMES]
            for s, (r, c, p, d) in enumerate(dec):
                where = "in the taxi" if p == 4 else f"waiting at {_TAXI_NAMES[p]}"
                desc[s] = (
                    f"Taxi at row {r}, col {c}; passenger {where}; destination {_TAXI_NAMES[d]}."
                )
        else:
            if n <= 128:
                cols.append(np.eye(n))
                names += [f"state_{s}" for s in range(n)]
            else:
                cols.append(np.arange(n)[:, None] / n)
                names.append("state_frac")
            grid = getattr(un, "desc", None) if self.family == "FrozenLake" else None
            shape = getattr(un, "shape", None) if self.family == "CliffWalking" else None
            if grid is not None:
                nrow, ncol = grid.shape
                rc = np.array([divmod(s, ncol) for s in range(n)])
                holes = np.zeros(n)
                for s, (r, c) in enumerate(rc):
                    near = [
                        (r + dr, c + dc)
                        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                        if 0 <= r + dr < nrow and 0 <= c + dc < ncol
                    ]
                    hole_dirs = [f"{rr},{cc}" for rr, cc in near if grid[rr, cc] == b"H"]
                    holes[s] = len(hole_dirs)
                    desc[s] = (
                        f"Frozen lake {nrow}x{ncol}: at row {r}, col {c}; goal at row {nrow - 1}, "
                        f"col {ncol - 1}; holes next to you: {len(hole_dirs)}."
                    )
                dist = ((nrow - 1 - rc[:, 0]) + (ncol - 1 - rc[:, 1])) / (nrow + ncol - 2)
                cols += [rc / [nrow - 1, ncol - 1], dist[:, None], holes[:, None] / 4]
                names += ["row", "col", "goal_distance", "holes_adjacent"]
            elif shape is not None:
                nrow, ncol = shape
                rc = np.array([divmod(s, ncol) for s in range(n)])
                edge = (rc[:, 0] == nrow - 2) & (rc[:, 1] > 0) & (rc[:, 1] < ncol - 1)
                cols += [rc / [nrow - 1, ncol - 1], edge[:, None].astype(float)]
                names += ["row", "col", "cliff_adjacent"]
                for s, (r, c) in enumerate(rc):
                    side = "the cliff is right below you" if edge[s] else "no cliff below"
                    desc[s] = f"Cliff walk: at row {r}, col {c}; goal at the bottom right; {side}."
        cols.append(np.zeros((n, 1)))
        names.append("t_frac")
        return np.concatenate(cols, axis=1).astype(np.float32), names, desc


def _init_params(env: gym.Env) -> set[str]:
    import inspect

    return set(inspect.signature(type(env.unwrapped).__init__).parameters)
