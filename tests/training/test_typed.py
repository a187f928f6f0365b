"""Several intervention types in training: the runner, the exact oracle, the pipeline, the artifact.

The runner's one-type-with-defaults case must give exactly today's rows; with two types every
budget holds per type; the exact typed model (noisy expert included) must predict what the
runner then measures live; ``helpseek train-typed`` on a tiny Taxi run must write a typed
artifact that core loads back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_core.metrics import success_rate
from helpseek_core.typed import solve_typed
from helpseek_core.typed_helper import TypedHelper
from training.envs import episode_rng, make_env, run_episode
from training.envs.runner import Rung
from training.typed_eval import oracle_policy, run_typed_cell
from training.typed_phase import TypeSpec, exact_typed_model, parse_type
from training.typed_train import TypedTrainConfig, main, parse_budget_vector

COLUMNS = ("t", "state_key", "action", "cost", "duration", "next_state_key", "behavior_p")


@pytest.fixture(scope="module")
def taxi():
    return make_env("taxi")


@pytest.mark.parametrize("kind", ["random", "callback"])
def test_one_rung_with_defaults_is_the_one_type_runner(taxi, kind):
    for seed in range(6):
        budget = 2
        if kind == "random":
            plain_decide = typed_decide = 0.3
        else:
            plain_decide = lambda ctx: ctx.t % 3 == 1  # noqa: E731
            typed_decide = lambda ctx: int(ctx.t % 3 == 1)  # noqa: E731
        rng, dyn = episode_rng(0, seed, 0)
        a = run_episode(
            taxi, seed, plain_decide, rng=rng, k=2, cost=1, budget=budget, dynamics_seed=dyn
        )
        rng, dyn = episode_rng(0, seed, 0)
        b = run_episode(
            taxi,
            seed,
            typed_decide,
            rng=rng,
            rungs=[Rung(k=2, cost=1)],
            budgets=[budget],
            dynamics_seed=dyn,
        )
        for col in COLUMNS:
            assert getattr(a, col) == getattr(b, col), col
        assert (a.success, a.interventions, a.steps) == (b.success, b.interventions, b.steps)
        assert b.types == [0] * len(b)


def test_two_rungs_hold_every_budget_and_log_the_type(taxi):
    rungs = [Rung(k=1, cost=1, expert_eps=0.3), Rung(k=3, cost=2)]
    seen = set()
    for seed in range(40):
        rng, dyn = episode_rng(1, seed, 0)
        ep = run_episode(taxi, seed, 1.0, rng=rng, rungs=rungs, budgets=[2, 3], dynamics_seed=dyn)
        assert ep.by_type[0] <= 2 and 2 * ep.by_type[1] <= 3
        types = np.asarray(ep.types)
        action = np.asarray(ep.action)
        assert np.array_equal(np.bincount(types[action == 1], minlength=2), ep.by_type)
        assert all(d <= 3 for d in np.asarray(ep.duration)[(action == 1) & (types == 1)])
        assert all(d == 1 for d in np.asarray(ep.duration)[(action == 1) & (types == 0)])
        assert np.array_equal(
            np.asarray(ep.cost)[action == 1], np.where(types == 1, 2, 1)[action == 1]
        )
        seen |= set(types[action == 1].tolist())
    assert seen == {0, 1}  # random collection picks both types


def test_callback_actions_true_unaffordable_and_out_of_range(taxi):
    rungs = [Rung(), Rung(k=2)]
    rng, dyn = episode_rng(2, 0, 0)
    ep = run_episode(
        taxi, 0, lambda ctx: True, rng=rng, rungs=rungs, budgets=[2, 5], dynamics_seed=dyn
    )
    assert ep.by_type == [2, 0]  # True is type 1; once spent, the runner proceeds
    rng, dyn = episode_rng(2, 0, 0)
    asked = []

    def decide(ctx):
        asked.append(ctx.remaining_per_type)
        return 2

    ep = run_episode(taxi, 0, decide, rng=rng, rungs=rungs, budgets=[0, 1], dynamics_seed=dyn)
    assert ep.by_type == [0, 1] and asked[0] == (0, 1) and len(asked) == 1
    with pytest.raises(ValueError, match="decide returned 3"):
        run_episode(taxi, 0, lambda ctx: 3, rng=rng, rungs=rungs, budgets=[1, 1])
    with pytest.raises(ValueError, match="one budget per rung"):
        run_episode(taxi, 0, 0.5, rng=rng, rungs=rungs, budgets=[1])


def test_exact_typed_oracle_predicts_the_live_runner(taxi):
    """The exact model of a noisy hint + an exact takeover must match live episodes."""
    types = [
        TypeSpec("hint", k=1, cost=1, cmax=3, expert_eps=0.5),
        TypeSpec("takeover", k=3, cmax=1),
    ]
    model = exact_typed_model(taxi, types)
    sol = solve_typed(model, [3, 1])
    for b in [(0, 0), (3, 0), (2, 1)]:
        out = run_typed_cell(
            taxi, oracle_policy(model, sol), b, [t.rung for t in types], 600, 2_000_000, 600, 7
        )
        rate = success_rate(out["success"])
        predicted = float(sol.success[b])
        assert rate.low - 0.02 <= predicted <= rate.high + 0.02, (b, predicted, rate)
        assert np.all(out["by_type"] <= np.asarray(b)[None, :])


def test_type_and_budget_grammar():
    t = parse_type("hint:k=2,cost=1,cmax=4,expert_eps=0.25")
    assert t == TypeSpec("hint", 2, 1, 4, 0.25) and parse_type(t.to_text()) == t
    with pytest.raises(ValueError, match="bad item 'kk=2'"):
        parse_type("hint:kk=2")
    with pytest.raises(ValueError, match="k=x"):
        parse_type("hint:k=x")
    with pytest.raises(ValueError, match="expert_eps"):
        parse_type("hint:expert_eps=2")
    assert parse_budget_vector("2/1", 2) == (2, 1)
    with pytest.raises(ValueError, match="needs 2 budgets"):
        parse_budget_vector("2", 2)
    with pytest.raises(ValueError, match="1 to 3 --type"):
        TypedTrainConfig(out=".", types=("a", "b", "c", "d"), budgets=())


def test_train_typed_end_to_end_writes_a_loadable_typed_artifact(tmp_path):
    cfg = TypedTrainConfig(
        out=tmp_path / "run",
        env="taxi",
        types=("hint:k=1,cmax=2,expert_eps=0.3", "takeover:k=3,cmax=1"),
        train_seeds=tuple(range(12)),
        episodes_per_seed=8,
        workers=1,
        budgets=("1/1", "2/0"),
        episodes=40,
        n_tasks=40,
    )
    out = main(cfg)
    art = load_artifact(out)
    helper = TypedHelper.from_artifact(art)
    assert art.manifest["kind"] == "typed"
    assert [t.name for t in helper.types] == ["hint", "takeover"]
    assert [t.cmax for t in helper.types] == [2, 1]
    d = helper.decide(np.zeros(helper.stats.mean.shape[0]), [0, 0], 10)
    assert d.action == 0  # nothing affordable: proceed
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["policies"]) == {
        "typed_oracle",
        "typed_helper",
        "one_type:hint",
        "one_type:takeover",
        "threshold",
        "random",
    }
    for cells in report["policies"].values():
        assert [c["budgets"] for c in cells] == [[1, 1], [2, 0]]
        assert all(sum(c["violations"]) == 0 for c in cells)
    assert report["oracle_kind"] == "exact" and len(report["summary"]) == 2
    assert (out / "report" / "success_vs_cost.png").stat().st_size > 0


def test_fit_mlp_classes_learns_three_classes_and_refuses_bad_labels():
    from training.mlp import fit_mlp_classes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2)).astype(np.float32)
    y = np.where(x[:, 0] < -0.5, 0, np.where(x[:, 1] > 0, 1, 2))  # three regions
    mlp = fit_mlp_classes(x, y, 3, hidden=(16,), epochs=40, batch_size=64, progress=False)
    assert mlp.outputs == 3
    assert np.mean(np.argmax(mlp.forward(x), axis=1) == y) > 0.95
    with pytest.raises(ValueError, match="y in 0..2"):
        fit_mlp_classes(x, np.full(600, 3), 3, progress=False)
