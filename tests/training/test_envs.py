"""Adapter contract checks (check_env-style) on the real environments, and the runner."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from training.envs import (
    EnvAdapter,
    EnvSpecError,
    StepResult,
    episode_rng,
    make_env,
    parse_spec,
    run_episode,
    stable_key,
)
from training.prm import exact_behavior_q

TOY = ["taxi", "frozenlake", "cliffwalking", "FrozenLake-v1:map_name=4x4,is_slippery=false"]


def _contract(adapter: EnvAdapter, seed: int, rng: np.random.Generator) -> None:
    adapter.reset(seed, 7)
    f = adapter.features()
    assert f.dtype == np.float32 and f.shape == (len(adapter.feature_names),)
    assert np.all(np.isfinite(f))
    assert isinstance(adapter.state_key(), int) and -(2**63) <= adapter.state_key() < 2**63
    assert isinstance(adapter.text(), str) and adapter.text()
    for t in range(adapter.horizon + 1):
        action = adapter.expert_action() if t % 2 else adapter.weak_action(rng)
        res = adapter.step(action)
        assert isinstance(res, StepResult)
        if res.terminated or res.truncated:
            assert t + 1 <= adapter.horizon
            assert not (res.success and not res.terminated)
            return
    raise AssertionError("episode ran past its step limit")


@pytest.mark.parametrize("spec", TOY + ["gotolocal"])
def test_adapter_contract(spec: str) -> None:
    adapter = make_env(spec)
    assert isinstance(adapter, EnvAdapter)
    rng = np.random.default_rng(0)
    for seed in range(3):
        _contract(adapter, seed, rng)
    # same seed -> same start state, features and text
    adapter.reset(1, 3)
    key, feats, text = adapter.state_key(), adapter.features(), adapter.text()
    again = make_env(spec)
    again.reset(1, 3)
    assert again.state_key() == key and again.text() == text
    np.testing.assert_array_equal(again.features(), feats)


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "Taxi-v4", "CliffWalking-v1"])
def test_underlying_toy_text_envs_pass_gymnasium_check_env(env_id: str) -> None:
    adapter = make_env(env_id)
    check_env(adapter._env.unwrapped, skip_render_check=True)  # type: ignore[attr-defined]


def test_spec_parsing_presets_and_errors() -> None:
    env_id, env_kw, opts = parse_spec("frozenlake:eps=0.1")
    assert env_id == "FrozenLake-v1" and env_kw == {"map_name": "8x8", "success_rate": 0.8}
    assert opts == {"H": 200, "weak": "eps", "eps": 0.1}
    assert make_env("CliffWalking-v1:is_slippery=true,H=30").horizon == 30
    with pytest.raises(EnvSpecError, match="expected key=value"):
        make_env("Taxi-v4:H")
    with pytest.raises(EnvSpecError, match="cannot build"):
        make_env("NoSuchEnv-v9")
    with pytest.raises(EnvSpecError, match="weak=wallblind needs Taxi"):
        make_env("FrozenLake-v1:weak=wallblind")
    with pytest.raises(EnvSpecError, match=r"option\(s\) \['H'\] do not apply to BabyAI"):
        make_env("BabyAI-GoToLocal-v0:H=10")


def test_stable_key_is_pinned() -> None:
    # the hash must not change between runs, processes or versions: pin one value
    assert stable_key("babyai-h", 3, (1, 2)) != stable_key("babyai-h", 3, (2, 1))  # order counts
    assert stable_key("a", 1) != stable_key("a", 2)
    assert stable_key("pin", 0) == 6984921902816326623


def test_exact_arrays_are_a_proper_model() -> None:
    for spec in ("taxi", "frozenlake", "cliffwalking"):
        ex = make_env(spec).exact_arrays()  # type: ignore[attr-defined]
        total = ex.trans.sum(axis=2) + ex.succ + ex.fail
        np.testing.assert_allclose(total, 1.0, atol=1e-9)
        np.testing.assert_allclose(ex.weak_policy.sum(1), 1.0)
        np.testing.assert_allclose(ex.expert_policy.sum(1), 1.0)
        assert abs(ex.start.sum() - 1) < 1e-9 and np.all(np.diff(ex.state_keys) > 0)


@pytest.mark.parametrize(("p", "k"), [(0.0, 1), (0.3, 3)])
def test_simulation_matches_exact_success(p: float, k: int) -> None:
    adapter = make_env("taxi")
    ex = adapter.exact_arrays()  # type: ignore[attr-defined]
    q = exact_behavior_q(ex, p, k)
    seed = 4
    adapter.reset(seed)
    s = int(np.searchsorted(ex.state_keys, adapter.state_key()))
    exact = (1 - p) * q[0, 0, s] + p * q[0, 1, s]
    n = 1500
    wins = 0
    for i in range(n):
        rng, dyn = episode_rng(0, seed, i)
        wins += run_episode(adapter, seed, p, rng=rng, k=k, dynamics_seed=dyn).success
    assert abs(wins / n - exact) < 4 * np.sqrt(exact * (1 - exact) / n) + 0.01


def test_weak_agents_leave_room_and_expert_succeeds() -> None:
    adapter = make_env("taxi")
    never = [run_episode(adapter, s, 0.0, rng=np.random.default_rng(s)).success for s in range(200)]
    always = [run_episode(adapter, s, 1.0, rng=np.random.default_rng(s)).success for s in range(50)]
    assert 0.1 < np.mean(never) < 0.4 and np.mean(always) == 1.0


def test_runner_callback_budget_and_macro_actions() -> None:
    adapter = make_env("frozenlake")
    seen: list[tuple[int, int, int | None, str]] = []

    def decide(ctx) -> bool:  # intervene whenever allowed
        seen.append((ctx.t, ctx.steps_left, ctx.remaining_budget, ctx.text))
        assert ctx.features.shape == (len(adapter.feature_names),)
        return True

    ep = run_episode(adapter, 0, decide, rng=np.random.default_rng(0), k=3, cost=2, budget=5)
    assert ep.interventions == 2  # 5 // 2
    assert ep.action[:2] == [1, 1] and ep.cost[:2] == [2, 2] and set(ep.action[2:]) <= {0}
    assert ep.duration[0] == 3 and ep.t[1] == 3 and ep.behavior_p[:2] == [1.0, 1.0]
    assert [r for _, _, r, _ in seen] == [5, 3]  # never asked once the budget is short
    assert seen[0][1] == adapter.horizon and "Step 0 of 200" in seen[0][3]
    assert sum(ep.duration) == ep.steps


def test_babyai_bot_stays_in_sync_and_box_toggle_is_failure() -> None:
    adapter = make_env("BabyAI-PutNextLocal-v0")
    # expert from any step: weak steps first, then the bot takes over and still finishes
    for seed in range(4):
        rng = np.random.default_rng(seed)
        ep = run_episode(adapter, seed, lambda ctx: ctx.t >= 3, rng=rng)
        assert ep.success, f"seed {seed}: bot failed after taking over at t=3"
        assert adapter.horizon == 2 * adapter.bot_episode_length(seed) + 2  # type: ignore[attr-defined]
    # a toggle in front of a box destroys it: the bot raises DisappearedBoxError -> failure
    random_agent = make_env("BabyAI-PutNextLocal-v0:weak=eps,eps=1.0")
    for seed in range(50):
        rng = np.random.default_rng(seed)
        random_agent.reset(seed)
        for _ in range(random_agent.horizon):
            un = random_agent._un  # type: ignore[attr-defined]
            front = un.grid.get(*un.front_pos)
            action = random_agent.weak_action(rng)
            res = random_agent.step(action)
            if front is not None and front.type == "box" and action == 5:
                assert res.terminated and not res.success
                assert (
                    un.grid.get(*un.front_pos) is None or un.grid.get(*un.front_pos).type != "box"
                )
                return
            if res.terminated or res.truncated:
                break
    raise AssertionError("no random episode toggled a box in 50 seeds")


# ---- plug-in specs, import=, desc=, unsupported ids ------------------------------------------

WRAPPER = '''
from training.envs import make_env


def make_adapter(eps=0.2, H=30):
    """A user's factory (here it wraps a built-in; test_plugin.py has a real one)."""
    return make_env(f"FrozenLake-v1:map_name=4x4,eps={eps},H={H}")


def broken(**kw):
    raise RuntimeError("simulator licence expired")


def not_an_adapter():
    return 42


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_file(tmp_path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "user"
    folder.mkdir()
    path = folder / "my_agents.py"
    path.write_text(WRAPPER)
    monkeypatch.chdir(folder)
    return path


def test_plugin_file_by_relative_path_rebuilds_from_anywhere(user_file, tmp_path, monkeypatch):
    adapter = make_env("my_agents.py:make_adapter:eps=0.5,H=12")
    assert isinstance(adapter, EnvAdapter) and adapter.horizon == 12
    assert adapter.spec == f"{user_file}:make_adapter:H=12,eps=0.5"
    # the default factory, and options right after the file name
    assert make_env("my_agents.py:H=12,eps=0.5").spec == adapter.spec
    assert make_env("my_agents.py").spec == f"{user_file}:make_adapter"
    monkeypatch.chdir(tmp_path)  # the canonical spec works from another folder
    again = make_env(adapter.spec)
    adapter.reset(3, 1)
    again.reset(3, 1)
    assert again.state_key() == adapter.state_key() and again.agent == "eps0.5"


def test_plugin_module_form(user_file, monkeypatch):
    monkeypatch.syspath_prepend(str(user_file.parent))
    adapter = make_env("my_agents:make_adapter:eps=0.3")
    assert adapter.spec == "my_agents:make_adapter:eps=0.3" and adapter.agent == "eps0.3"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere.py:make_adapter", r"plug-in file .*nowhere\.py not found"),
        (
            "my_agents.py:nope",
            r"has no factory 'nope' \(callables defined there: broken, make_adapter, make_env, not_an_adapter\)",
        ),
        ("my_agents.py:NOT_CALLABLE", r"my_agents\.py:NOT_CALLABLE is not callable"),
        (
            "my_agents.py:broken:x=1",
            r"broken\(x=1\) raised RuntimeError: simulator licence expired",
        ),
        ("my_agents.py:not_an_adapter", r"returned int, whose 'spec' attribute cannot be set"),
        ("my_agents.py:make_adapter:bogus=1", r"make_adapter\(bogus=1\) raised TypeError"),
        (
            "no_such_module_xyz:make_adapter",
            r"cannot import module 'no_such_module_xyz': ModuleNotFoundError",
        ),
        ("my_agents.py:make_adapter:eps", r"expected key=value, got 'eps'"),
    ],
)
def test_plugin_errors_name_the_spec_and_the_reason(user_file, spec, message):
    with pytest.raises(EnvSpecError, match=message) as err:
        make_env(spec)
    assert str(err.value).startswith("env spec ")


def test_plugin_that_fails_to_import_or_returns_a_partial_adapter(user_file):
    user_file.with_name("bad_import.py").write_text("import numpy\n1 / 0\n")
    with pytest.raises(EnvSpecError, match=r"importing .*bad_import\.py failed: ZeroDivisionError"):
        make_env("bad_import.py:make_adapter")
    user_file.with_name("partial.py").write_text(
        "class Half:\n    spec = ''\n    feature_names = ['a']\n    horizon = 5\n"
        "    def reset(self, seed, dynamics_seed=None):\n        pass\n"
        "    step = 'not a method'\n\n"
        "def make_adapter():\n    return Half()\n"
    )
    with pytest.raises(EnvSpecError) as err:
        make_env("partial.py")
    assert str(err.value).endswith(
        "make_adapter returned Half, not an EnvAdapter (missing or not callable: agent, expert, "
        "state_key, features, text, weak_action, expert_action, step; see training/envs/base.py)"
    )


def test_import_option_registers_custom_gymnasium_ids(tmp_path):
    reg = tmp_path / "lakes.py"
    reg.write_text(
        "import gymnasium as gym\n"
        "if 'HelpSeekTinyLake-v0' not in gym.registry:\n"
        "    gym.register('HelpSeekTinyLake-v0',\n"
        "        entry_point='gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv',\n"
        "        kwargs={'desc': ['SFF', 'HFG'], 'is_slippery': False})\n"
    )
    adapter = make_env(f"HelpSeekTinyLake-v0:import={reg},H=10,eps=0")
    assert adapter.spec == f"HelpSeekTinyLake-v0:H=10,eps=0,import={reg}"
    assert adapter.n_states == 6  # type: ignore[attr-defined]
    ep = run_episode(adapter, 0, 1.0, rng=np.random.default_rng(0))
    assert ep.success and ep.steps == 3  # right, down... the value-iteration expert's route


def test_desc_option_builds_a_custom_toy_text_map() -> None:
    adapter = make_env("FrozenLake-v1:desc=SFFF/HHFH/FFFG,is_slippery=false,H=20,eps=0")
    grid = adapter._env.unwrapped.desc  # type: ignore[attr-defined]
    assert [bytes(r).decode() for r in grid] == ["SFFF", "HHFH", "FFFG"]
    assert adapter.spec == "FrozenLake-v1:H=20,desc=SFFF/HHFH/FFFG,eps=0,is_slippery=false"
    assert make_env(adapter.spec).spec == adapter.spec
    ep = run_episode(adapter, 0, 0.0, rng=np.random.default_rng(0))
    assert ep.success and ep.steps == 5  # the shortest route: 3 right/down + 2 more


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            "MiniGrid-DoorKey-5x5-v0",
            "MiniGrid-DoorKey-5x5-v0 is a minigrid env without a built-in adapter",
        ),
        ("CartPole-v1", "not a toy_text env with a discrete model env.P"),
        ("NoSuchEnv-v9", "cannot build: Environment `NoSuchEnv` doesn't exist"),
    ],
)
def test_unsupported_ids_say_what_is_supported(spec: str, reason: str) -> None:
    with pytest.raises(EnvSpecError) as err:
        make_env(spec)
    text = str(err.value)
    assert text.startswith(f"env spec {spec!r}: ") and reason in text
    assert "BabyAI-* levels" in text and "FILE.py:FACTORY" in text and "docs/your-agent.md" in text


def test_option_values_are_typed() -> None:
    _, env_kw, _ = parse_spec("Taxi-v4:a=nan,b=1e-3,c=True,d=07,e=x/y,desc=AB/CD")
    assert env_kw == {"a": "nan", "b": 0.001, "c": True, "d": 7, "e": "x/y", "desc": ["AB", "CD"]}
