"""POST /v1/sessions/... decisions: ``/v1/should_intervene`` (also ``/should_intervene``).

The route is a :class:`DecisionRoute`: FastAPI declares it (OpenAPI, validation, errors) as
usual, but an ordinary request — one JSON body that validates, at most one of each header the
route reads, a key the authenticator accepts — is answered without FastAPI's per-request
dependency solving and response re-validation, which cost more CPU than the decision itself.
Anything else (a body that fails validation, a bad key, odd headers, dependency overrides)
falls through to the normal FastAPI path with the body replayed, so every error answer is
the one FastAPI gives. Exceptions raised while deciding reach the same exception handlers.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Message, Receive, Scope, Send

from service.decision_log import NullDecisionLog, state_key
from service.decisions import Outcome, decide_request
from service.deps import ServiceState, Svc, Tenant
from service.errors import FieldError
from service.schemas import DecisionRequest, DecisionResponse

__all__ = ["DecisionRoute", "router"]

_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "The body could not be parsed (e.g. JSON nested too deeply)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "Unknown or expired session (or another tenant's)"},
    409: {"description": "The session is closed"},
    413: {"description": "Body too large"},
}
# headers the fast path reads (ASGI header names are lower-case bytes)
_READ = {b"content-type", b"authorization", b"x-api-key", b"idempotency-key"}
_JSON_HEADERS = b"application/json"
_MAX_IDEMPOTENCY_KEY = 128  # Header(max_length=...) below


class DecisionRoute(APIRoute):
    """An APIRoute with a fast path for well-formed decision requests (module docstring)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer directly when the request is ordinary, else run the FastAPI route."""
        if scope.get("method") != "POST":
            await super().handle(scope, receive, send)
            return
        messages: list[Message] = []
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            messages.append(msg)
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        fast = _fast_inputs(scope, messages, b"".join(chunks))
        if fast is None:
            await super().handle(scope, _replay(messages, receive), send)
            return
        svc, body, tenant, idempotency_key = fast
        response = await _answer(svc, body, tenant, idempotency_key)
        payload = response.__pydantic_serializer__.to_json(response, by_alias=True)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(payload)).encode("latin-1")),
                    (b"content-type", _JSON_HEADERS),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _fast_inputs(
    scope: Scope, messages: list[Message], raw: bytes
) -> tuple[ServiceState, DecisionRequest, str, str | None] | None:
    """(svc, body, tenant, idempotency key) as FastAPI would resolve them, or None to fall back."""
    if not raw or messages[-1]["type"] != "http.request":
        return None
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "svc", None)
    if not isinstance(state, ServiceState) or getattr(app, "dependency_overrides", None):
        return None
    seen: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        if name in _READ:
            if name in seen:
                return None  # repeated header: let FastAPI pick
            seen[name] = value
    if seen.get(b"content-type") != _JSON_HEADERS:
        return None
    try:
        body = DecisionRequest.model_validate(json.loads(raw))
    except Exception:  # noqa: BLE001 - any parse/validation problem: FastAPI answers it
        return None
    idem: str | None = None
    if b"idempotency-key" in seen:
        idem = seen[b"idempotency-key"].decode("latin-1")
        if not idem or len(idem) > _MAX_IDEMPOTENCY_KEY:
            return None
    # exactly fastapi.security HTTPBearer(auto_error=False) then APIKeyHeader (deps.get_tenant)
    presented: str | None = None
    authorization = seen.get(b"authorization", b"").decode("latin-1") or None
    scheme, credentials = get_authorization_scheme_param(authorization)
    if authorization and scheme and credentials and scheme.lower() == "bearer":
        presented = credentials
    else:
        presented = seen.get(b"x-api-key", b"").decode("latin-1") or None
    try:
        tenant = state.auth.tenant(presented)
    except Exception:  # noqa: BLE001 - AuthError: FastAPI answers it (401)
        return None
    return state, body, tenant, idem


router = APIRouter(tags=["decisions"], route_class=DecisionRoute)


@router.post("/v1/should_intervene", response_model=DecisionResponse, responses=_ERRORS)
@router.post(
    "/should_intervene", response_model=DecisionResponse, responses=_ERRORS, include_in_schema=False
)
async def should_intervene(
    body: DecisionRequest,
    svc: Svc,
    tenant: Tenant,
    idempotency_key: Annotated[str | None, Header(max_length=_MAX_IDEMPOTENCY_KEY)] = None,
) -> DecisionResponse:
    """Decide whether the agent should ask for help now (exhausted budget = normal answer).

    With ``session_id`` the server's budget is the truth and an intervention is charged
    atomically; without it the caller's ``remaining_budget`` is used and nothing is stored.
    ``request_id`` (or the ``Idempotency-Key`` header) makes retries replay the first answer.
    """
    return await _answer(svc, body, tenant, idempotency_key)


async def _answer(
    svc: ServiceState, body: DecisionRequest, tenant: str, idempotency_key: str | None
) -> DecisionResponse:
    rid = body.request_id
    if idempotency_key is not None:
        if rid is not None and rid != idempotency_key:
            raise FieldError(["header", "idempotency-key"], "differs from body request_id")
        rid = idempotency_key
    out = await decide_request(svc, body, tenant, rid)
    if not out.replayed:
        svc.metrics.count_decision(out.response, out.asked)
        if not isinstance(svc.log, NullDecisionLog):  # skip building a record nobody keeps
            await svc.log.append(_record(body, out))
    return out.response


def _record(body: DecisionRequest, out: Outcome) -> dict[str, Any]:
    r = out.response
    feats = out.features
    return {
        "record": "decision",
        "episode_id": body.session_id,
        "tenant": out.tenant,
        "request_id": r.request_id,
        "t": body.step,
        "state_key": (
            body.state.key
            if body.state.key is not None
            else state_key(None if feats is None else feats, out.text)  # type: ignore[arg-type]
        ),
        "agent_state_key": body.state.key is not None,
        "features": feats,
        "text": out.text,
        "action": int(r.intervene),
        "intervention_type": max(out.type_index - 1, 0),  # index in the artifact's types
        "type": out.type_name,
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
        "behavior_p": float(r.intervene) if out.explore_p is None else out.explore_p,
        "explore_p": out.explore_p,
        "action_taken_previous": body.action_taken,
        **(
            {
                "remaining_budgets_before": out.before_by_type,
                "remaining_budgets_after": r.remaining_budgets,
            }
            if out.before_by_type is not None
            else {}
        ),
    }
