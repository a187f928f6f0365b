"""An agent that asks a HelpSeek service, at every decision point, whether to call its expert.

It plays episodes of a real environment (gymnasium's Taxi by default: a wall-blind navigator
as the weak agent, value iteration as the expert) through the environment adapters of
``training.envs``. At each decision point it sends the state's features to
``/v1/should_intervene``; when the answer is "intervene" the expert acts for the artifact's k
steps, otherwise the weak agent acts. The server keeps the episode's budget, so the agent
never has to count. At the end it reports the outcome and prints a summary.

With a typed model (``GET /v1/model`` lists ``types``, issue 14) each session holds a budget
per type (``--budgets hint=3,takeover=1``); an answer names the type to request, and the
expert then acts for that type's k steps (the agent keeps it acting without asking again).

    make run                                    # in another terminal: serve the default helper
    python examples/agent.py --episodes 50 --budget 2
    python examples/agent.py --url http://127.0.0.1:8000 --api-key KEY --json
    python examples/agent.py --budgets a=3,b=1    # a typed model: one budget per type

Needs the ``train`` extra (gymnasium) for the environment; the SDK itself is pure httpx.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from helpseek_client import HelpSeekClient, HelpSeekClientError, ModelInfo
from training.envs import make_env
from training.envs.runner import DecisionContext, episode_rng, run_episode

__all__ = ["Summary", "main", "run_agent"]


@dataclass
class Summary:
    """What the agent saw over all its episodes."""

    env: str
    model_version: str
    budget: int
    episodes: int = 0
    successes: int = 0
    decisions: int = 0  # answers received
    interventions: int = 0  # "intervene" answers (each let the expert act)
    refused_for_budget: int = 0  # answers with reason budget_exhausted
    degraded: int = 0
    novel: int = 0
    max_interventions: int = 0  # most interventions in one episode
    steps: int = 0
    seconds: float = 0.0
    per_episode: list[dict[str, object]] = field(default_factory=list)
    budgets: dict[str, int] | None = None  # typed models: the budget of every type
    interventions_by_type: dict[str, int] = field(default_factory=dict)  # typed models

    @property
    def success_rate(self) -> float:
        """Share of episodes that succeeded."""
        return self.successes / self.episodes if self.episodes else 0.0


def run_agent(
    client: HelpSeekClient,
    env: str,
    *,
    episodes: int,
    budget: int,
    seed: int = 1_000_000,
    root_seed: int = 20_250_204,
    keep_episodes: bool = False,
    budgets: dict[str, int] | None = None,
    explore: bool | float | None = None,
) -> Summary:
    """Play ``episodes`` episodes of ``env`` (task seeds ``seed``, ``seed + 1``, ...).

    The defaults are the held-out task seeds and noise root of ``helpseek train``'s live
    evaluation, so the success rate is comparable with the artifact's evaluation summary.

    Every decision point asks the service; the request id is ``<session>-<t>``, so a retried
    question is never charged twice. A typed model takes ``budgets`` (one per type); a granted
    type's expert acts for that type's k steps.

    ``explore=p`` (or True: the server's schedule) plays exploration sessions instead: the
    service answers at random with probability p and logs it (training data for ``helpseek
    export-log`` / ``train --log``); no model is needed, k and the cost are 1. Every decision
    also sends the adapter's own state key (``state.key``).
    """
    adapter = make_env(env)
    if explore is not None:
        return _run(
            client,
            adapter,
            env,
            None,
            episodes,
            budget,
            seed,
            root_seed,
            keep_episodes,
            None,
            explore,
        )
    model = client.model()
    names = model.raw.get("feature_names")
    if names is not None and list(names) != list(adapter.feature_names):
        raise SystemExit(
            f"the service's model {model.model_version} expects features {names}, but {env} "
            f"produces {adapter.feature_names}: pass the --env the artifact was trained on"
        )
    k, cost = model.k or 1, model.cost or 1
    type_k = {t.name: t.k for t in model.types or ()}
    if type_k:
        if budgets is None:
            raise SystemExit(f"the model has intervention types {sorted(type_k)}: pass --budgets")
        k, cost = 1, 0  # the agent keeps a granted type's expert acting for that type's k steps
    elif budgets is not None:
        raise SystemExit(f"the model {model.model_version} has one intervention type: use --budget")
    return _run(
        client,
        adapter,
        env,
        model,
        episodes,
        budget,
        seed,
        root_seed,
        keep_episodes,
        budgets,
        None,
        k,
        cost,
        type_k,
    )


def _run(
    client: HelpSeekClient,
    adapter: Any,
    env: str,
    model: ModelInfo | None,
    episodes: int,
    budget: int,
    seed: int,
    root_seed: int,
    keep_episodes: bool,
    budgets: dict[str, int] | None,
    explore: bool | float | None,
    k: int = 1,
    cost: int = 1,
    type_k: dict[str, int] | None = None,
) -> Summary:
    type_k = type_k or {}
    version = model.model_version if model is not None else f"explore:{explore}"
    horizon = model.horizon if model is not None else getattr(adapter, "horizon", None)
    out = Summary(
        env=adapter.spec,
        model_version=version,
        budget=budget,
        budgets=budgets,
        interventions_by_type=dict.fromkeys(type_k, 0),
    )
    started = time.perf_counter()
    for i in range(episodes):
        task = seed + i
        rng, dynamics = episode_rng(root_seed, task, 0)
        session = client.start_session(
            None if type_k else budget,
            budgets=budgets if type_k else None,
            horizon=horizon,
            metadata={"env": env, "task": task},
            explore=explore,
        )
        sid = session.session_id
        seen = {
            "decisions": 0,
            "intervene": 0,
            "exhausted": 0,
            "degraded": 0,
            "novel": 0,
            "acting": 0,
        }

        def decide(ctx: DecisionContext, sid: str = sid, seen: dict[str, int] = seen) -> bool:
            if seen["acting"] > 0:  # a typed intervention still covering this step
                seen["acting"] -= 1
                return True
            answer = client.should_intervene(
                sid,
                step=ctx.t,
                features=ctx.features,
                steps_left=ctx.steps_left,
                request_id=f"{sid}-{ctx.t}",
                state_key=ctx.state_key,
            )
            seen["decisions"] += 1
            seen["intervene"] += answer.intervene
            seen["exhausted"] += answer.reason == "budget_exhausted"
            seen["degraded"] += answer.degraded
            seen["novel"] += answer.novel
            if answer.type is not None:
                out.interventions_by_type[answer.type] += 1
                seen["acting"] = type_k[answer.type] - 1
            return answer.intervene

        # budget=None: the runner asks at every decision point; the server enforces the budget
        ep = run_episode(
            adapter,
            task,
            decide,
            rng=rng,
            k=k,
            cost=cost,
            budget=None,
            dynamics_seed=dynamics,
            episode_id=i,
        )
        client.report_outcome(sid, success=ep.success, steps=ep.steps)
        out.episodes += 1
        out.successes += ep.success
        out.decisions += seen["decisions"]
        out.interventions += seen["intervene"] if type_k else ep.interventions
        out.refused_for_budget += seen["exhausted"]
        out.degraded += seen["degraded"]
        out.novel += seen["novel"]
        out.max_interventions = max(
            out.max_interventions, seen["intervene"] if type_k else ep.interventions
        )
        out.steps += ep.steps
        if keep_episodes:
            out.per_episode.append(
                {
                    "session_id": sid,
                    "task": task,
                    "success": ep.success,
                    "steps": ep.steps,
                    "interventions": ep.interventions,
                    "decisions": seen["decisions"],
                }
            )
    out.seconds = time.perf_counter() - started
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the agent against a service and print what happened."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL")
    p.add_argument("--api-key", default=None, help="X-API-Key, if the service has keys")
    p.add_argument("--env", default="taxi", help="env spec the artifact was trained on")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--budget", type=int, default=2, help="interventions per episode")
    p.add_argument(
        "--budgets",
        type=_budgets,
        default=None,
        help="typed models: budget per type, e.g. hint=3,takeover=1",
    )
    p.add_argument("--seed", type=int, default=1_000_000, help="first task seed")
    p.add_argument("--root-seed", type=int, default=20_250_204, help="root of the noise seeds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-episode", action="store_true", help="include every episode (with --json)")
    args = p.parse_args(argv)
    try:
        with HelpSeekClient(args.url, api_key=args.api_key) as client:
            s = run_agent(
                client,
                args.env,
                episodes=args.episodes,
                budget=args.budget,
                seed=args.seed,
                root_seed=args.root_seed,
                keep_episodes=args.per_episode,
                budgets=args.budgets,
            )
    except HelpSeekClientError as exc:
        print(f"agent: the service failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**asdict(s), "success_rate": s.success_rate}))
        return 0
    print(f"{s.episodes} episodes of {s.env} against model {s.model_version}, budget {s.budget}")
    print(f"  success rate       {s.success_rate:.3f}")
    print(
        f"  interventions      {s.interventions} ({s.interventions / max(s.episodes, 1):.2f} per "
        f"episode, at most {s.max_interventions})"
    )
    print(f"  decisions asked    {s.decisions} ({s.decisions / max(s.seconds, 1e-9):.0f}/s)")
    print(f"  budget refusals    {s.refused_for_budget}; degraded {s.degraded}; novel {s.novel}")
    if s.budgets is not None:
        print(f"  budgets per type   {s.budgets}; granted {s.interventions_by_type}")
    return 0


def _budgets(text: str) -> dict[str, int]:
    """``hint=3,takeover=1`` -> {"hint": 3, "takeover": 1}."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected name=count[,name=count...], got {text!r}")
        out[name.strip()] = int(value)
    return out


if __name__ == "__main__":
    sys.exit(main())
