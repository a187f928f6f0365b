"""Phase I environments: adapters (env + weak agent + expert), the spec registry, the runner.

Public entry points::

    make_env(spec) -> EnvAdapter          e.g. "taxi", "FrozenLake-v1:map_name=8x8", "BabyAI-GoToLocal-v0"
    run_episode(adapter, seed, decide, *, rng, k, cost, budget, ...) -> EpisodeResult
    episodes_to_steplog(episodes, n_features) -> helpseek_core.types.StepLog

See docs/environments.md for the environments, agents and their measured success rates.
"""

from training.envs.base import EnvAdapter, EnvSpecError, ExactArrays, StepResult, stable_key
from training.envs.registry import PRESETS, make_env, parse_spec
from training.envs.runner import (
    Decide,
    DecisionContext,
    EpisodeResult,
    episode_rng,
    episodes_to_steplog,
    run_episode,
)

__all__ = [
    "PRESETS",
    "Decide",
    "DecisionContext",
    "EnvAdapter",
    "EnvSpecError",
    "EpisodeResult",
    "ExactArrays",
    "StepResult",
    "episode_rng",
    "episodes_to_steplog",
    "make_env",
    "parse_spec",
    "run_episode",
    "stable_key",
]
