"""Exploration sessions (Phase I from production) and the explore-only service (no artifact).

A session created with ``explore`` answers "intervene" with probability ``p`` at every
decision, independent of any helper, and the decision log records ``p`` as the behaviour
probability (``behavior_p``; 0 where the budget cannot pay). ``p`` lives in the session's
metadata under :data:`EXPLORE_META` (so every worker and the Redis store see it); the budget
is charged through the same atomic ``try_consume`` as helper decisions, with a plan that
wants the drawn answer at every budget level. ``{"explore": true}`` takes the next ``p`` of
the configured schedule (``HELPSEEK_EXPLORE_SCHEDULE``, round robin per worker process).

Without an artifact (``HELPSEEK_ALLOW_NO_ARTIFACT=true`` and none at ``HELPSEEK_ARTIFACT``)
the holder serves :class:`NoModel`: explore sessions work, anything that needs the helper
answers 503 (:class:`~service.errors.NoModelError`), and ``POST /admin/reload`` loads the
artifact once it has been written there. See docs/service.md ("Exploration sessions").
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from helpseek_core.helper import Scored
from service.budget.protocol import Grant, Plan, PlanMissError, RequestIdReusedError, SessionKey
from service.deps import CachedSession, ServiceState
from service.errors import BudgetStoreUnavailableError, FieldError, NoModelError
from service.schemas import DecisionRequest, Explore

__all__ = [
    "EXPLORE_META",
    "NO_MODEL_KIND",
    "NoModel",
    "decide_explore",
    "explore_p_of",
    "session_explore_p",
]

EXPLORE_META = "helpseek.explore_p"  # session metadata key holding p (reserved prefix)
NO_MODEL_KIND = "none"
NO_MODEL_VERSION = "none"
_ANSWER_V = "a1"  # the recorded-answer format of service.decisions
_WINDOW = 8
_rng = random.SystemRandom()


class NoModel:
    """The holder's scorer when the service runs explore-only: scoring answers 503."""

    kind = NO_MODEL_KIND
    model_version = NO_MODEL_VERSION
    feature_dim = 0
    horizon = 0
    cmax = 0
    cost = 1  # explore sessions charge one unit per intervention
    threshold = 0.0
    inline = True
    manifest: Mapping[str, Any] = {}

    def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """Refuse: no helper is loaded."""
        raise NoModelError()


def session_explore_p(explore: bool | Explore | None, svc: ServiceState) -> float | None:
    """Pick the p a new session explores with (None: helper session); true sweeps the schedule."""
    if explore is None or explore is False:
        return None
    if explore is True:
        ps = svc.settings.explore_schedule
        p = ps[svc.explore_swept % len(ps)]
        svc.explore_swept += 1
        return float(p)
    return float(explore.p)


def explore_p_of(metadata: Mapping[str, Any]) -> float | None:
    """Read the p stored in a session's metadata (None: not an explore session)."""
    p = metadata.get(EXPLORE_META)
    return None if p is None else float(p)


def _state(body: DecisionRequest) -> np.ndarray | None:
    st = body.state
    if st.features is not None:
        return np.asarray(st.features, np.float64)
    if st.text is not None and not st.text.strip():
        raise FieldError(["body", "state", "text"], "must be a non-empty string")
    return None


async def decide_explore(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    key: SessionKey,
    cached: CachedSession,
) -> Any:
    """Answer one decision of an explore session: intervene with probability p, charged atomically.

    Returns a :class:`service.decisions.Outcome` (imported late: decisions imports this module).
    """
    from service.decisions import Outcome, body_digest, decode_answer

    p = cached.explore_p
    assert p is not None  # noqa: S101 - the caller checked
    scorer = svc.holder.scorer
    cost = scorer.cost
    feats = _state(body)
    digest = body_digest(body, feats)
    horizon = cached.horizon or scorer.horizon
    left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
    want = _rng.random() < p
    ps = repr(float(p))
    tail = f"\t0\t0\t0.0\t{scorer.model_version}"  # not degraded, not novel
    hi = cached.remaining
    grant: Grant | None = None
    try:
        for _ in range(4):
            lo = max(hi - _WINDOW, 0)
            heads = tuple(
                f"{_ANSWER_V}\t0\t{c}\tbudget_exhausted\t{ps}\t0"
                if c < cost
                else (
                    f"{_ANSWER_V}\t1\t{c - cost}\texplore\t{ps}\t0"
                    if want
                    else f"{_ANSWER_V}\t0\t{c}\texplore\t{ps}\t0"
                )
                for c in range(lo, hi + 1)
            )
            plan = Plan(lo, (want,) * len(heads), heads, tail)
            try:
                grant = await svc.store.try_consume(key, rid, cost, plan, digest)
                break
            except PlanMissError as miss:
                hi = miss.remaining
    except RequestIdReusedError as exc:
        raise FieldError(["body", "request_id"], str(exc), "request_id_reused") from exc
    if grant is None:
        raise BudgetStoreUnavailableError("budget kept changing under the decision")
    cached.remaining = grant.remaining
    response = decode_answer(grant.answer or plan.answer_at(grant.before), rid)
    return Outcome(
        response=response,
        asked=want,
        charged=0 if grant.replayed else grant.before - grant.remaining,
        before=grant.before,
        steps_left=left,
        replayed=grant.replayed,
        tenant=tenant,
        features=body.state.features,
        text=body.state.text,
        explore_p=p if grant.before >= cost else 0.0,
    )
