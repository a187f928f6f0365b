"""The offline deep-RL comparator: budget relabelling, learning the obvious, numpy export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpseek_core.helper import FeatureStats
from helpseek_core.types import StepLog
from training.offline_rl import (
    OfflineQPolicy,
    OfflineRLConfig,
    budget_transitions,
    train_offline_rl,
)

H = 4


def _log(rng: np.random.Generator, episodes: int = 400) -> StepLog:
    """Two-step episodes. State A (feature 0) then B (feature 1); at B intervening wins
    for sure and proceeding wins with 0.2; at A either action just moves to B."""
    cols: dict[str, list] = {
        k: []
        for k in (
            "episode_id",
            "task_id",
            "t",
            "state_key",
            "action",
            "intervention_type",
            "cost",
            "duration",
            "next_state_key",
            "done",
            "truncated",
            "success",
            "behavior_p",
        )
    }
    feats = []
    for e in range(episodes):
        a0, a1 = rng.integers(0, 2, size=2)
        win = bool(a1 == 1 or rng.random() < 0.2)
        for t, (key, a, nxt, done) in enumerate([(10, a0, 20, False), (20, a1, 20, True)]):
            for name, v in (
                ("episode_id", e),
                ("task_id", 0),
                ("t", t),
                ("state_key", key),
                ("action", a),
                ("intervention_type", 0),
                ("cost", int(a)),
                ("duration", 1),
                ("next_state_key", nxt),
                ("done", done),
                ("truncated", False),
                ("success", win),
                ("behavior_p", 0.5),
            ):
                cols[name].append(v)
            feats.append([float(key == 20)])
    return StepLog(**{k: np.asarray(v) for k, v in cols.items()}, features=np.asarray(feats))


def test_budget_relabelling_respects_the_hard_budget() -> None:
    log = _log(np.random.default_rng(0), 50)
    stats = FeatureStats.fit(log.features)
    tr = budget_transitions(log, stats, cmax=2, horizon=H, cost=1)
    n_int = int(log.action.sum())
    # every row at c = 1, 2; only proceed rows at c = 0
    assert tr.x.shape[0] == 2 * len(log) + (len(log) - n_int)
    c_now = tr.x[:, -3] * 2  # encode_inputs: c / cmax
    assert np.all(tr.action[c_now < 1] == 0)
    c_next = tr.x_next[:, -3] * 2
    assert np.allclose(c_next, c_now - tr.action)
    assert np.array_equal(tr.valid_next[:, 1], c_next >= 1)
    assert np.all(tr.reward[tr.done == 0] == 0)


def test_cql_learns_to_spend_its_budget_where_it_pays(tmp_path: Path) -> None:
    log = _log(np.random.default_rng(1))
    stats = FeatureStats.fit(log.features)
    cfg = OfflineRLConfig(steps=1500, hidden=(32, 32), seed=0, alpha=0.2)
    q = train_offline_rl(log, stats, cmax=1, horizon=H, cost=1, cfg=cfg)
    a, b = np.array([0.0]), np.array([1.0])
    assert q.decide(b, remaining=1, steps_left=H - 1) is True  # intervene at B
    assert q.decide(a, remaining=1, steps_left=H) is False  # save the unit at A
    assert q.decide(b, remaining=0, steps_left=H - 1) is False  # never beyond the budget
    qb = q.q_values(b[None], np.array([1]), np.array([H - 1]))[0]
    assert abs(qb[1] - 1.0) < 0.15 and abs(qb[0] - 0.2) < 0.15  # Q ~ success probability
    path = q.save(tmp_path / "q.npz")
    back = OfflineQPolicy.load(path)
    x = np.array([[0.0], [1.0]])
    assert np.allclose(
        back.q_values(x, np.array([1, 1]), np.array([3, 3])),
        q.q_values(x, np.array([1, 1]), np.array([3, 3])),
    )
