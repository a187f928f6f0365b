"""Phase I environments: adapters (env + weak agent + expert), the spec registry, the runner.

Public entry points::

    make_env(spec) -> EnvAdapter          e.g. "taxi", "FrozenLake-v1:map_name=8x8", "BabyAI-GoToLocal-v0",
                                          or your own: "my_agents.py:make_adapter:eps=0.5"
    run_episode(adapter, seed, decide, *, rng, k, cost, budget, ...) -> EpisodeResult
    episodes_to_steplog(episodes, n_features) -> helpseek_core.types.StepLog

See docs/environments.md for the environments, agents and their measured success rates, and
docs/your-agent.md for plugging in your own (the protocol: :class:`EnvAdapter`).
"""

from training.envs.base import (
    EnvAdapter,
    EnvSpecError,
    ExactArrays,
    StepResult,
    UnsupportedEnvError,
    stable_key,
)
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
    "UnsupportedEnvError",
    "episode_rng",
    "episodes_to_steplog",
    "make_env",
    "parse_spec",
    "run_episode",
    "stable_key",
]
