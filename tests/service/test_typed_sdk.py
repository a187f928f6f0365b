"""The SDK and examples/agent.py against a typed model served by ``python -m service``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from helpseek_client import HelpSeekClient, InterventionTypeInfo, ValidationError
from tests.conftest import free_port, write_typed_test_artifact

REPO = Path(__file__).resolve().parents[2]
TINY_ENV = "FrozenLake-v1:map_name=4x4,is_slippery=true,H=30,weak=eps,eps=0.5"
UP = [1.0, 0.0, 0.0, 0.0]


def test_sdk_typed_session_answers_and_errors(
    serve: Callable[..., str], typed_artifact_dir: Path
) -> None:
    base = serve(free_port(), artifact=typed_artifact_dir)
    with HelpSeekClient(base) as hs:
        model = hs.model()
        assert model.types == (
            InterventionTypeInfo("a", 1, 1, 3),
            InterventionTypeInfo("b", 3, 1, 1),
        )
        s = hs.start_session(budgets={"a": 1, "b": 1}, horizon=25)
        assert s.budgets == {"a": 1, "b": 1} and s.budget == 2
        answers = [hs.should_intervene(s.session_id, step=t, features=UP) for t in range(3)]
        assert [(a.type, a.remaining_budgets) for a in answers] == [
            ("b", {"a": 1, "b": 0}),
            ("a", {"a": 0, "b": 0}),
            (None, {"a": 0, "b": 0}),
        ]
        st = hs.session(s.session_id)
        assert st.remaining_budgets == {"a": 0, "b": 0} and st.budgets == {"a": 1, "b": 1}
        d = hs.should_intervene(step=0, features=UP, remaining_budgets={"a": 0, "b": 1})
        assert d.type == "b" and d.remaining_budgets == {"a": 0, "b": 0}
        with pytest.raises(ValidationError, match="unknown intervention type"):
            hs.start_session(budgets={"a": 1, "zz": 1})
        with pytest.raises(ValueError, match="exactly one of budget= or budgets="):
            hs.start_session(2, budgets={"a": 1, "b": 1})


def test_example_agent_plays_typed_episodes(serve: Callable[..., str], tmp_path: Path) -> None:
    """Every episode's start state asks for b (then a): the server's budgets bound each type."""
    from training.envs import make_env

    names = list(make_env(TINY_ENV).feature_names)
    art = write_typed_test_artifact(
        tmp_path / "art", dim=len(names), feature_names=names, horizon=30
    )
    base = serve(free_port(), artifact=art)
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from agent import run_agent  # examples/agent.py
    finally:
        sys.path.remove(str(REPO / "examples"))
    with HelpSeekClient(base) as hs:
        s = run_agent(hs, TINY_ENV, episodes=6, budget=0, budgets={"a": 2, "b": 1})
    assert s.episodes == 6 and s.budgets == {"a": 2, "b": 1}
    assert s.interventions_by_type["b"] == 6  # at t = 0 of every episode
    assert 0 <= s.interventions_by_type["a"] <= 2 * 6
    assert s.interventions == sum(s.interventions_by_type.values())
    assert s.max_interventions <= 3
