"""POST /v1/sessions/... decisions: ``/v1/should_intervene`` (also ``/should_intervene``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from service.decision_log import state_key
from service.decisions import Outcome, decide_request
from service.deps import ServiceState, Svc, Tenant
from service.errors import FieldError
from service.schemas import DecisionRequest, DecisionResponse

__all__ = ["router"]

router = APIRouter(tags=["decisions"])

_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Missing or invalid API key"},
    404: {"description": "Unknown or expired session (or another tenant's)"},
    409: {"description": "The session is closed"},
    413: {"description": "Body too large"},
}


@router.post("/v1/should_intervene", response_model=DecisionResponse, responses=_ERRORS)
@router.post(
    "/should_intervene", response_model=DecisionResponse, responses=_ERRORS, include_in_schema=False
)
async def should_intervene(
    body: DecisionRequest,
    svc: Svc,
    tenant: Tenant,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> DecisionResponse:
    """Decide whether the agent should ask for help now (exhausted budget = normal answer).

    With ``session_id`` the server's budget is the truth and an intervention is charged
    atomically; without it the caller's ``remaining_budget`` is used and nothing is stored.
    ``request_id`` (or the ``Idempotency-Key`` header) makes retries replay the first answer.
    """
    rid = body.request_id
    if idempotency_key is not None:
        if rid is not None and rid != idempotency_key:
            raise FieldError(["header", "idempotency-key"], "differs from body request_id")
        rid = idempotency_key
    out = await decide_request(svc, body, tenant, rid)
    if not out.replayed:
        _count(svc, out)
        await svc.log.append(_record(body, out))
    return out.response


def _count(svc: ServiceState, out: Outcome) -> None:
    r, m = out.response, svc.metrics
    m.decisions.labels(
        outcome="intervene" if r.intervene else "proceed",
        reason=r.reason,
        model_version=r.model_version,
    ).inc()
    if r.intervene:
        m.granted.labels(model_version=r.model_version).inc()
    elif r.reason == "budget_exhausted" and out.asked:
        m.refused.labels(reason="budget").inc()
    if r.degraded:
        m.degraded.labels(mode="open" if r.reason == "fail_open" else "closed").inc()
    if r.novel:
        m.novel.labels(model_version=r.model_version).inc()


def _record(body: DecisionRequest, out: Outcome) -> dict[str, object]:
    r = out.response
    feats = out.features
    return {
        "record": "decision",
        "episode_id": body.session_id,
        "tenant": out.tenant,
        "request_id": r.request_id,
        "t": body.step,
        "state_key": state_key(None if feats is None else feats, out.text),  # type: ignore[arg-type]
        "features": feats,
        "text": out.text,
        "action": int(r.intervene),
        "intervention_type": 0,
        "cost": out.charged,
        "remaining_before": out.before,
        "remaining_after": r.remaining_budget,
        "steps_left": out.steps_left,
        "probability": r.probability,
        "asked": out.asked,
        "reason": r.reason,
        "degraded": r.degraded,
        "novel": r.novel,
        "novelty_score": r.novelty_score,
        "model_version": r.model_version,
        "behavior_p": float(r.intervene),
    }
