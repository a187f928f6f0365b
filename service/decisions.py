"""The decision flow behind /v1/should_intervene: score, consume atomically, degrade on outage.

With a session the server's budget is the truth: the state is scored at a small window of
remaining budgets around the last one this process saw (one batched forward pass), and the
store's Lua script picks the entry for the budget it really holds while charging — one round
trip, and the decision is consistent with the charge. If the window misses (other workers
spent more), the state is rescored at the budget the store reported and tried again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.budget.protocol import Grant, Plan, PlanMissError, SessionKey
from service.deps import CachedSession, ServiceState
from service.errors import BudgetStoreUnavailableError, FieldError
from service.model_holder import Scored, Scorer
from service.schemas import DecisionRequest, DecisionResponse

__all__ = ["Outcome", "decide_request"]

_WINDOW = 8  # budgets scored below the last known remaining


@dataclass(frozen=True)
class Outcome:
    """A decision plus what the log and metrics need."""

    response: DecisionResponse
    asked: bool  # the helper wanted to intervene at the budget used
    charged: int  # budget units charged by this request
    before: int  # remaining budget the decision was taken at
    steps_left: int
    replayed: bool
    tenant: str
    features: list[float] | None
    text: str | None


def _check_state(body: DecisionRequest, scorer: Scorer) -> np.ndarray | None:
    st = body.state
    if scorer.kind == "features":
        if st.features is None:
            raise FieldError(["body", "state", "text"], "this model takes state.features, not text")
        if len(st.features) != scorer.feature_dim:
            raise FieldError(
                ["body", "state", "features"],
                f"expected {scorer.feature_dim} features, got {len(st.features)}",
            )
        return np.asarray(st.features, np.float64)
    if st.text is None:
        raise FieldError(
            ["body", "state", "features"], f"this {scorer.kind} model takes state.text"
        )
    if not st.text.strip():
        raise FieldError(["body", "state", "text"], "must be a non-empty string")
    return None


async def _score(
    svc: ServiceState,
    feats: np.ndarray | None,
    body: DecisionRequest,
    lo: int,
    hi: int,
    steps_left: int,
) -> tuple[Scorer, Scored]:
    budgets = np.arange(lo, hi + 1, dtype=np.int64)
    return await svc.holder.score(feats, body.state.text, budgets, steps_left)


async def decide_request(
    svc: ServiceState, body: DecisionRequest, tenant: str, request_id: str | None
) -> Outcome:
    """Answer one decision request (see the module docstring)."""
    scorer0 = svc.holder.scorer
    feats = _check_state(body, scorer0)
    rid = request_id or uuid.uuid4().hex

    if body.session_id is None:
        if body.remaining_budget is None:
            raise FieldError(["body", "remaining_budget"], "required when no session_id is given")
        c = body.remaining_budget
        left = (
            body.steps_left if body.steps_left is not None else max(scorer0.horizon - body.step, 0)
        )
        scorer, scored = await _score(svc, feats, body, c, c, left)
        i = scored.at(c)
        go = bool(scored.intervene[i])
        reason = "helper" if c >= scorer.cost else "budget_exhausted"
        return _outcome(
            body, tenant, rid, scorer, scored, before=c, go=go, reason=reason, left=left
        )

    key = SessionKey(tenant, body.session_id)
    cached = svc.sessions.get(key)
    try:
        if cached is None:
            info = await svc.store.describe(key)
            cached = CachedSession(info.budget, info.horizon, info.remaining)
            svc.remember(key, cached)
        horizon = cached.horizon or scorer0.horizon
        left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
        hi = cached.remaining
        grant: Grant | None = None
        for _ in range(4):
            lo = max(hi - _WINDOW, 0)
            scorer, scored = await _score(svc, feats, body, lo, hi, left)
            plan = Plan(lo, tuple(bool(x) for x in scored.intervene))
            try:
                grant = await svc.store.try_consume(key, request_id, scorer.cost, plan)
                break
            except PlanMissError as miss:
                hi = miss.remaining
        if grant is None:
            raise BudgetStoreUnavailableError("budget kept changing under the decision")
    except BudgetStoreUnavailableError:
        return await _degraded(svc, body, tenant, rid, feats, cached, scorer0)
    cached.remaining = grant.remaining
    if not (lo <= grant.before <= hi):  # a replay decided at another budget
        scorer, scored = await _score(svc, feats, body, grant.before, grant.before, left)
    reason = "helper" if grant.before >= scorer.cost else "budget_exhausted"
    return _outcome(
        body, tenant, rid, scorer, scored,
        before=grant.before, after=grant.remaining, go=grant.granted and grant.wanted,
        reason=reason, left=left, replayed=grant.replayed,
    )  # fmt: skip


async def _degraded(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    feats: np.ndarray | None,
    cached: CachedSession | None,
    scorer0: Scorer,
) -> Outcome:
    """Budget store down: fail open (trust the helper at the best-known budget) or closed."""
    if body.remaining_budget is not None:
        c = body.remaining_budget
    elif cached is not None:
        c = cached.remaining
    else:
        c = scorer0.cost  # unknown: enough for one intervention
    horizon = (cached.horizon if cached else None) or scorer0.horizon
    left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
    scorer, scored = await _score(svc, feats, body, c, c, left)
    if svc.settings.fail_mode == "open":
        go = bool(scored.intervene[0])
        return _outcome(
            body, tenant, rid, scorer, scored,
            before=c, go=go, reason="fail_open", left=left, degraded=True,
        )  # fmt: skip
    return _outcome(
        body, tenant, rid, scorer, scored,
        before=c, go=False, reason="fail_closed", left=left, degraded=True,
    )  # fmt: skip


def _outcome(
    body: DecisionRequest,
    tenant: str,
    rid: str,
    scorer: Scorer,
    scored: Scored,
    *,
    before: int,
    go: bool,
    reason: Any,
    left: int,
    after: int | None = None,
    degraded: bool = False,
    replayed: bool = False,
) -> Outcome:
    """Build the answer; ``after`` defaults to ``before`` less the cost when intervening."""
    if after is None:
        after = before - scorer.cost if go else before
    i = scored.at(before)
    response = DecisionResponse(
        intervene=go,
        probability=float(scored.probability[i]),
        remaining_budget=after,
        reason=reason,
        model_version=scorer.model_version,
        degraded=degraded,
        novel=scored.novel,
        novelty_score=scored.novelty_score,
        request_id=rid,
        budget_clipped=bool(scored.budget_clipped[i]),
    )
    return Outcome(
        response=response,
        asked=bool(scored.asks[i]),
        charged=(before - after) if (go and not degraded) else 0,
        before=before,
        steps_left=left,
        replayed=replayed,
        tenant=tenant,
        features=body.state.features,
        text=body.state.text,
    )
