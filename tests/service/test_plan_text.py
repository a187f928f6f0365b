"""The plan's answer text per budget (written out in ``_plan`` for speed) equals what
``encode_answer`` writes for the response that budget gets, and the probability equals core's
``MLP.probability`` bit for bit."""

from __future__ import annotations

import numpy as np

from helpseek_core.helper import FeatureStats, Helper, Scored, encode_inputs
from helpseek_core.mlp import MLP
from service.decisions import _plan, encode_answer
from service.schemas import DecisionResponse


class _Scorer:
    cost = 2
    model_version = "m-1"


def test_plan_heads_are_the_encoded_answers_at_every_budget() -> None:
    lo = 0
    probs = np.array([0.1, 0.9, 0.9, 0.5, 1e-300, 0.9, 0.9, 0.9], np.float64)
    budgets = np.arange(lo, lo + len(probs))
    clipped = budgets > 5
    asks = probs >= 0.5
    scored = Scored(budgets, probs, asks, asks & (budgets >= 2), clipped, True, 1.25)
    plan = _plan(_Scorer(), scored, lo)  # type: ignore[arg-type]
    for i, c in enumerate(budgets.tolist()):
        go = bool(asks[i]) and c >= 2
        r = DecisionResponse(
            intervene=go,
            probability=float(probs[i]),
            remaining_budget=c - 2 if go else c,
            reason="helper" if c >= 2 else "budget_exhausted",
            model_version="m-1",
            degraded=False,
            novel=True,
            novelty_score=1.25,
            request_id="x",
            budget_clipped=bool(clipped[i]),
        )
        assert plan.answer_at(c) == encode_answer(r), c
    assert plan.wants == tuple(bool(w) for w in asks & (budgets >= 2))


def test_scored_probability_is_mlp_probability_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    dim = 5
    sizes = [dim + 3, 16, 1]
    pairs = zip(sizes, sizes[1:], strict=False)
    mlp = MLP(
        tuple((rng.normal(size=(a, b)) * 8).astype(np.float32) for a, b in pairs),
        tuple(np.zeros(b, np.float32) for b in sizes[1:]),
    )  # large weights: logits beyond +-60 are clipped as in MLP.probability
    stats = FeatureStats.fit(rng.normal(size=(256, dim)))
    helper = Helper(mlp, stats, cmax=4, horizon=50, cost=1)
    for _ in range(200):
        f = rng.normal(size=dim) * 3
        b = np.arange(0, 7)
        left = int(rng.integers(0, 50))
        x = encode_inputs(stats, np.tile(f, (7, 1)), b, np.full(7, left), 4, 50, 1)
        np.testing.assert_array_equal(helper.score(f, b, left).probability, mlp.probability(x))
