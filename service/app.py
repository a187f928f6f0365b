"""The composition root: ``create_app(settings)`` (docs/design.md, rule 6).

The lifespan loads the artifact, opens the one Redis client of the process (or the
in-process store), opens the decision log, points the model gauges and installs the SIGHUP
reload handler; shutdown closes them. Two pure-ASGI middlewares time every request by route
template and cap body size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import routes, routes_admin, routes_sessions
from service.auth import Authenticator
from service.budget.memory import MemoryBudgetStore
from service.budget.protocol import BudgetStore
from service.budget.redis_store import RedisBudgetStore, make_client
from service.decision_log import (
    DecisionLog,
    JsonlDecisionLog,
    NullDecisionLog,
    RedisStreamDecisionLog,
)
from service.deps import ServiceState
from service.errors import BodyTooLargeError, error_body, install_error_handlers
from service.explore import NO_MODEL_KIND, NoModel
from service.instrumented import InstrumentedStore
from service.metrics import Metrics
from service.model_holder import ModelHolder, Scorer, target_intervention_rate
from service.settings import Settings
from service.typed_scorer import TypedScorer, tighten_typed_schema

__all__ = ["create_app"]

_log = logging.getLogger("helpseek.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app; nothing is opened until the lifespan starts."""
    settings = settings or Settings()  # type: ignore[call-arg]  # read from the environment
    metrics = Metrics(multiproc_dir=settings.prometheus_multiproc_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        art = Path(settings.artifact)
        if settings.allow_no_artifact and not (art / "manifest.json").exists():
            holder = ModelHolder(NoModel(), art)  # explore-only until /admin/reload loads one
        else:
            holder = ModelHolder.open(art)
        client = None
        store: BudgetStore
        if settings.redis_url:
            client = make_client(
                settings.redis_url,
                settings.redis_connect_timeout_s,
                settings.redis_socket_timeout_s,
            )
            store = RedisBudgetStore(
                client,
                settings.redis_key_prefix,
                settings.redis_cooldown_s,
                settings.redis_deadline_s,
                settings.request_id_cap,
            )
        else:
            store = MemoryBudgetStore(cap=settings.request_id_cap)
        log: DecisionLog = NullDecisionLog()
        if settings.decision_log == "redis-stream":
            if client is None:
                raise ValueError("HELPSEEK_DECISION_LOG=redis-stream needs HELPSEEK_REDIS_URL")
            key = settings.redis_key_prefix + settings.decision_stream
            log = RedisStreamDecisionLog(client, key, settings.decision_stream_maxlen)
        elif settings.decision_log:
            log = JsonlDecisionLog(Path(settings.decision_log))
        svc = ServiceState(
            settings=settings,
            metrics=metrics,
            auth=Authenticator(settings.api_keys, settings.admin_keys),
            holder=holder,
            store=InstrumentedStore(store, metrics),
            log=log,
        )
        app.state.svc = svc
        s = holder.scorer
        metrics.model_swapped(None, s.model_version, target_intervention_rate(s.manifest))
        hup = _install_sighup(svc)
        _log.info(
            "serving %s (%s store, fail mode %s)", s.model_version, store.kind, settings.fail_mode
        )
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await log.aclose()
            await store.aclose()
            await holder.aclose()
            if settings.prometheus_multiproc_dir is not None:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid(), str(settings.prometheus_multiproc_dir))

    app = FastAPI(
        title="HelpSeek",
        version="0.1.0",
        summary="Should the agent ask for help now? Budgeted intervention decisions.",
        lifespan=lifespan,
        docs_url=None,  # no CDN-hosted Swagger UI / ReDoc pages: /openapi.json is the contract
        redoc_url=None,
    )
    _openapi_for_served_model(app)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_admin.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TimingMiddleware, metrics=metrics)
    return app


def _openapi_for_served_model(app: FastAPI) -> None:
    """Serve /openapi.json with DecisionRequest examples valid for the model being served."""
    build = app.openapi
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        svc = getattr(app.state, "svc", None)
        version = svc.holder.scorer.model_version if svc is not None else ""
        if cache.get("version") != version or "schema" not in cache:
            app.openapi_schema = None
            schema = build()
            if svc is not None:
                tighten_decision_schema(schema["components"]["schemas"], svc.holder.scorer)
            cache.update(version=version, schema=schema)
        app.openapi_schema = cache["schema"]
        return cache["schema"]

    app.openapi = openapi  # type: ignore[method-assign]


def tighten_decision_schema(components: dict[str, Any], scorer: Scorer) -> None:
    """Say in the spec what the served model accepts, beyond what pydantic can state.

    The state is exactly one of ``features`` (``feature_dim`` numbers) or ``text`` (not
    blank), whichever the model takes; a request names a ``session_id`` or, stateless, gives
    its ``remaining_budget``; a new session gives ``budget`` or (typed) ``budgets``. Also sets
    examples valid for this model. (One rule stays outside the spec: an ``Idempotency-Key``
    header that differs from the body's ``request_id`` is a 422 naming the header.)
    """
    if scorer.kind == NO_MODEL_KIND:  # explore-only: the generic spec holds
        return
    key = components["State"].get("properties", {}).get("key", {"type": "integer"})
    if scorer.kind == "features":
        features = {
            "type": "array",
            "items": {"type": "number"},
            "minItems": scorer.feature_dim,
            "maxItems": scorer.feature_dim,
        }
        state = {"required": ["features"], "properties": {"features": features, "key": key}}
    else:
        text = {"type": "string", "minLength": 1, "maxLength": 32_768, "pattern": r"\S"}
        state = {"required": ["text"], "properties": {"text": text, "key": key}}
    old = components["State"]
    components["State"] = {
        "type": "object",
        "additionalProperties": False,
        "title": old.get("title", "State"),
        "description": old.get("description", ""),
        **state,
    }
    request = components["DecisionRequest"]
    request["anyOf"] = [
        {"required": ["session_id"], "properties": {"session_id": {"type": "string"}}},
        {"required": ["remaining_budget"], "properties": {"remaining_budget": {"type": "integer"}}},
    ]
    request["examples"] = decision_examples(scorer)
    typed = bool(getattr(scorer, "types", None))
    if "remaining_budgets" in request.get("properties", {}) and not typed:
        request["not"] = {
            "required": ["remaining_budgets"],
            "properties": {"remaining_budgets": {"type": "object"}},
        }
    create = components.get("SessionCreate", {})
    if "budgets" in create.get("properties", {}) and not typed:
        # an untyped model takes budget, never budgets (typed models: service.typed_scorer)
        budget = create["properties"]["budget"]
        not_null = [a for a in budget.get("anyOf", []) if a.get("type") != "null"]
        create["required"] = sorted({*create.get("required", []), "budget"})
        create["properties"]["budget"] = {**budget, "anyOf": not_null or [{"type": "integer"}]}
        create["not"] = {"required": ["budgets"], "properties": {"budgets": {"type": "object"}}}
    if isinstance(scorer, TypedScorer):  # budgets per type, features only
        create.get("properties", {}).pop("explore", None)  # explore sessions: one-type models
        tighten_typed_schema(components, scorer)


def decision_examples(scorer: Scorer) -> list[dict[str, Any]]:
    """Build a session request and a stateless one, with a state this model accepts."""
    if scorer.kind == "features":
        mean = getattr(getattr(getattr(scorer, "helper", None), "stats", None), "mean", None)
        values = [0.0] * scorer.feature_dim if mean is None else [round(float(v), 3) for v in mean]
        state: dict[str, Any] = {"features": values}
    else:
        state = {"text": "The agent faces a locked door and holds no key."}
    return [
        {"session_id": "3f2a9c", "request_id": "ep7-step12", "step": 12, "state": state},
        {"step": 3, "state": state, "remaining_budget": 2},
    ]


def _install_sighup(svc: ServiceState) -> bool:
    if not hasattr(signal, "SIGHUP"):
        return False

    def on_hup() -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):  # refusal is logged and counted
                await routes_admin.reload_model(svc)

        asyncio.ensure_future(run())

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_hup)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
        return False
    return True


class TimingMiddleware:
    """Observe helpseek_request_duration_seconds{route} with the matched route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.child(m.request_duration, label).observe(time.perf_counter() - t0)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 (declared length or counted while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        err = BodyTooLargeError(f"request body exceeds {self.max_bytes} bytes")
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                declared = value
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await _send_error(send, err)
                return
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): buffer up to the limit, then replay the body.
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # client went away
            body += msg.get("body", b"")
            more = bool(msg.get("more_body", False))
            if len(body) > self.max_bytes:
                await _send_error(send, err)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Send, err: BodyTooLargeError) -> None:
    import json

    body = json.dumps(error_body(err)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
