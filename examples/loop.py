"""The production loop, end to end, driven only through the SDK (docs/your-agent.md).

Against a running service (which may start with no artifact: ``HELPSEEK_ALLOW_NO_ARTIFACT``),
for an agent the service knows nothing about (default: the MiniGrid DoorKey plug-in of
``examples/doorkey_adapter.py``):

1. play ``--explore-episodes`` exploration sessions (``explore=True``: the server sweeps p);
2. ``helpseek export-log`` the service's decision log into a step log;
3. ``helpseek train --log`` it (no simulator) into an artifact;
4. put the artifact where the service serves from and ``POST /admin/reload`` (SDK);
5. measure at ``--budget`` over ``--episodes`` held-out episodes per policy, with Wilson 95%
   intervals: never (explore p = 0), the served helper, and random at the helper's
   interventions per episode (explore sessions with p calibrated to that usage).

    HELPSEEK_ALLOW_NO_ARTIFACT=true HELPSEEK_ARTIFACT=/tmp/loop/served \\
    HELPSEEK_DECISION_LOG=/tmp/loop/decisions.jsonl helpseek serve &
    python examples/loop.py --log /tmp/loop/decisions.jsonl --serve-artifact /tmp/loop/served \\
        --work /tmp/loop/work --episodes 1000 --json

The decision log and the served artifact path are the service's own files (same machine).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent import Summary, run_agent  # noqa: E402

from helpseek_client import HelpSeekClient  # noqa: E402
from training.envs import make_env  # noqa: E402

__all__ = ["main", "run_loop", "wilson"]

DOORKEY = str(Path(__file__).resolve().parent / "doorkey_adapter.py") + ":eps=0.6,H=30"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (mid - half, mid + half)


def _cell(s: Summary) -> dict[str, Any]:
    lo, hi = wilson(s.successes, s.episodes)
    return {
        "success": s.success_rate,
        "wilson95": [lo, hi],
        "episodes": s.episodes,
        "interventions_per_episode": s.interventions / max(s.episodes, 1),
        "decisions_per_episode": s.decisions / max(s.episodes, 1),
        "model_version": s.model_version,
    }


def _helpseek(*args: str) -> None:
    exe = Path(sys.executable).with_name("helpseek")
    cmd = [str(exe) if exe.exists() else "helpseek", *args]
    subprocess.run(cmd, check=True)


def run_loop(
    client: HelpSeekClient,
    *,
    env: str,
    log: Path,
    serve_artifact: Path,
    work: Path,
    explore_episodes: int,
    explore_budget: int,
    episodes: int,
    budget: int,
    train_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the loop once (module docstring); return the report."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    explored = run_agent(
        client, env, episodes=explore_episodes, budget=explore_budget, seed=0, explore=True
    )
    steps = work / "steps"
    shutil.rmtree(steps, ignore_errors=True)
    names = ",".join(make_env(env).feature_names)
    _helpseek("export-log", "--log", str(log), "--out", str(steps), "--feature-names", names)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    _helpseek("train", "--log", str(steps), "--out", str(run), *train_args)
    art = run / "artifact" if (run / "artifact" / "manifest.json").exists() else run
    tmp = serve_artifact.with_name(serve_artifact.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(art, tmp)
    old = serve_artifact.with_name(serve_artifact.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if serve_artifact.exists():
        serve_artifact.rename(old)
    tmp.rename(serve_artifact)
    reloaded = client.reload_model()
    t_train = time.perf_counter() - t0
    helper = run_agent(client, env, episodes=episodes, budget=budget)
    never = run_agent(client, env, episodes=episodes, budget=budget, explore=0.0)
    rate = helper.interventions / max(helper.episodes, 1)
    # random at matched usage: p per decision scaled until its interventions match the helper's
    p = min(rate / max(never.decisions / max(never.episodes, 1), 1.0), 1.0)
    for r in range(2):  # two proportional corrections on probe episodes (other seeds)
        probe = run_agent(
            client,
            env,
            episodes=max(episodes // 5, 20),
            budget=budget,
            explore=p,
            seed=2_000_000 + 100_000 * r,
        )
        used = probe.interventions / max(probe.episodes, 1)
        if used > 0:
            p = min(p * rate / used, 1.0)
    rand = run_agent(client, env, episodes=episodes, budget=budget, explore=p)
    cells = {
        "never": _cell(never),
        "random_matched": {**_cell(rand), "p": p},
        "helper": _cell(helper),
    }
    return {
        "env": env,
        "budget": budget,
        "explore_episodes": explored.episodes,
        "explore_interventions_per_episode": explored.interventions / max(explored.episodes, 1),
        "reloaded": dict(reloaded),
        "seconds_to_served_helper": t_train,
        "policies": cells,
        "helper_minus_never": cells["helper"]["success"] - cells["never"]["success"],
        "helper_minus_random": cells["helper"]["success"] - cells["random_matched"]["success"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, help="X-API-Key (an admin key: the loop reloads)")
    p.add_argument("--env", default=DOORKEY, help="the agent's env spec (plug-in grammar)")
    p.add_argument("--log", type=Path, required=True, help="the service's JSONL decision log")
    p.add_argument(
        "--serve-artifact",
        type=Path,
        required=True,
        help="the service's HELPSEEK_ARTIFACT path (replaced, then reloaded)",
    )
    p.add_argument("--work", type=Path, required=True, help="folder for the step log and run")
    p.add_argument("--explore-episodes", type=int, default=3000)
    p.add_argument("--explore-budget", type=int, default=5)
    p.add_argument("--episodes", type=int, default=1000, help="episodes per evaluated policy")
    p.add_argument("--budget", type=int, default=2)
    p.add_argument(
        "--train-arg",
        action="append",
        default=[],
        help="extra argument for helpseek train (repeatable)",
    )
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    with HelpSeekClient(a.url, api_key=a.api_key, timeout=30.0) as client:
        report = run_loop(
            client,
            env=a.env,
            log=a.log,
            serve_artifact=a.serve_artifact,
            work=a.work,
            explore_episodes=a.explore_episodes,
            explore_budget=a.explore_budget,
            episodes=a.episodes,
            budget=a.budget,
            train_args=a.train_arg,
        )
    if a.json:
        print(json.dumps(report))
    else:
        for name, c in report["policies"].items():
            lo, hi = c["wilson95"]
            print(
                f"{name:15s} {c['success']:.3f} [{lo:.3f}, {hi:.3f}]  "
                f"{c['interventions_per_episode']:.2f} interventions/episode"
            )
        print(
            f"helper - never {report['helper_minus_never']:+.3f}; "
            f"helper - random {report['helper_minus_random']:+.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
