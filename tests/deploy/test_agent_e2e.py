"""End to end: train a small artifact with `helpseek train`, serve it (2 uvicorn workers,
a private Redis), run examples/agent.py over HTTP, and check what everybody saw agrees.

- success over N episodes lies within the offline evaluation's interval (same held-out seeds);
- no episode ever used more interventions than its budget, by the agent's count and the
  server's;
- the service's metrics moved by exactly what the agent saw.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpseek_client import HelpSeekClient
from tests.deploy.deploy_harness import (
    REPO,
    Proc,
    read_samples,
    service_importable,
    start_redis,
    start_service,
    total,
)

BUDGET = 2
EPISODES = 100
TRAIN = [
    "train",
    "--env",
    "taxi",
    "--cmax",
    "3",
    "--train-seeds",
    "0-49",
    "--episodes-per-seed",
    "12",
    "--helper-epochs",
    "15",
    "--no-lagrangian",
    "--no-offline-rl",
    "--budgets",
    str(BUDGET),
    "--episodes",
    str(EPISODES),
    "--eval-tasks",
    str(EPISODES),
    "--workers",
    "1",
    "--no-progress",
]


def helpseek_cli() -> list[str]:
    exe = Path(sys.executable).with_name("helpseek")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "training"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact from `helpseek train` (about 25 s on 2 cores)."""
    probe = subprocess.run(
        [*helpseek_cli(), "train", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        pytest.skip(f"`helpseek train` is not available yet: {probe.stderr.strip()[-300:]}")
    out = tmp_path_factory.mktemp("trained") / "artifact"
    run = subprocess.run(
        [*helpseek_cli(), *TRAIN, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (out / "manifest.json").is_file()
    return out


@pytest.fixture(scope="module")
def served(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    reason = service_importable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("e2e")
    redis = start_redis(tmp)
    try:
        svc = start_service(tmp, trained, f"redis://127.0.0.1:{redis.port}/0", api_keys="agent-key")
    except Exception:
        redis.stop()
        raise
    yield svc
    svc.stop()
    redis.stop()


def run_agent(svc: Proc, env: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "examples/agent.py",
            "--url",
            svc.url,
            "--api-key",
            "agent-key",
            "--env",
            env,
            "--episodes",
            str(EPISODES),
            "--budget",
            str(BUDGET),
            "--json",
            "--per-episode",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_agent_over_http_matches_offline_evaluation_and_metrics(
    trained: Path, served: Proc
) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    env = manifest["env"]
    before = read_samples(served.url)
    seen = run_agent(served, env)
    after = read_samples(served.url)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert seen["episodes"] == EPISODES and seen["model_version"] == manifest["artifact_id"]
    assert seen["degraded"] == 0

    # interventions never above budget: the agent's count and the server's
    assert seen["max_interventions"] <= BUDGET
    with HelpSeekClient(served.url, api_key="agent-key") as hs:
        for ep in seen["per_episode"]:
            status = hs.session(ep["session_id"])
            assert status.closed and status.success == ep["success"]
            assert status.interventions_used == ep["interventions"] <= BUDGET

    # metrics consistent with what the agent saw
    assert moved("helpseek_decisions_total") == seen["decisions"]
    assert moved("helpseek_interventions_granted_total") == seen["interventions"]
    assert moved("helpseek_decisions_total", outcome="intervene") == seen["interventions"]
    assert (
        moved("helpseek_decisions_total", reason="budget_exhausted") == seen["refused_for_budget"]
    )
    assert moved("helpseek_novel_states_total") == seen["novel"]
    assert moved("helpseek_degraded_total") == 0
    assert moved("helpseek_sessions_started_total") == EPISODES
    assert moved("helpseek_sessions_finished_total", outcome="success") == seen["successes"]
    assert (
        moved("helpseek_sessions_finished_total", outcome="failure") == EPISODES - seen["successes"]
    )
    assert moved("helpseek_request_duration_seconds_count") >= seen["decisions"]

    # success within the offline evaluation's interval (same held-out task seeds and noise)
    summary = manifest["evaluation"]
    offline = float(summary["success"]["helper"][str(BUDGET)])
    n_off = int(summary["episodes_per_cell"])
    live = seen["success_rate"]
    p = min(max(offline, 1 / n_off), 1 - 1 / n_off)
    half_width = 3.0 * math.sqrt(p * (1 - p) * (1 / EPISODES + 1 / n_off))
    print(
        f"success: live {live:.3f} over {EPISODES} episodes, offline {offline:.3f} "
        f"(n={n_off}, interval +-{half_width:.3f}); never {summary['never']}"
    )
    assert abs(live - offline) <= half_width


def test_agent_refuses_a_mismatched_environment(served: Proc) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "examples/agent.py",
            "--url",
            served.url,
            "--api-key",
            "agent-key",
            "--env",
            "frozenlake",
            "--episodes",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "pass the --env the artifact was trained on" in out.stderr


def test_agent_reports_an_unreachable_service() -> None:
    from tests.deploy.deploy_harness import free_port

    out = subprocess.run(
        [
            sys.executable,
            "examples/agent.py",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--episodes",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "agent: the service failed" in out.stderr and "ConnectError" in out.stderr
