"""Exceptions raised inside the service, and their one mapping to HTTP.

    ServiceError
    ├── AuthError                      401  missing or unknown API key
    ├── ForbiddenError                 403  a tenant key (or a remote client) on /admin/*
    ├── SessionNotFoundError           404  unknown, expired, or another tenant's session
    ├── SessionClosedError             409  the outcome was already reported
    ├── FieldError                     422  a request field is invalid (names the field)
    ├── BodyTooLargeError              413  body over HELPSEEK_MAX_BODY_BYTES
    ├── ReloadRefusedError             409  the new artifact failed validation (old one serves)
    ├── BudgetStoreUnavailableError    503  Redis down on an endpoint that cannot degrade
    └── NoModelError                   503  explore-only service: no helper artifact loaded

Core errors (:class:`helpseek_core.errors.InputError`) that escape a handler become 422.
Every 422 body is FastAPI's ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``, with
any non-finite number the client sent (``NaN``, ``Infinity``, ``1e309``) echoed as the string
``"NaN"`` / ``"Infinity"`` / ``"-Infinity"`` (JSON has no such numbers); every other error
body is ``{"detail": "<message>"}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from helpseek_core.errors import InputError

__all__ = [
    "AuthError",
    "BodyTooLargeError",
    "BudgetStoreUnavailableError",
    "FieldError",
    "ForbiddenError",
    "ReloadRefusedError",
    "ServiceError",
    "SessionClosedError",
    "SessionNotFoundError",
    "install_error_handlers",
]


class ServiceError(Exception):
    """Root of the service's own errors; ``status`` is the HTTP status it maps to."""

    status = 500


class AuthError(ServiceError):
    """Missing or unknown API key."""

    status = 401


class ForbiddenError(ServiceError):
    """An authenticated caller without the admin role on an /admin route."""

    status = 403


class SessionNotFoundError(ServiceError):
    """The session does not exist for this tenant (unknown, expired, or someone else's)."""

    status = 404


class SessionClosedError(ServiceError):
    """The session's outcome was already reported."""

    status = 409


class ReloadRefusedError(ServiceError):
    """A new artifact failed validation; the message names the file and the reason."""

    status = 409


class BodyTooLargeError(ServiceError):
    """The request body exceeds the configured limit."""

    status = 413


class BudgetStoreUnavailableError(ServiceError):
    """The budget store (Redis) did not answer in time or refused the connection."""

    status = 503


class NoModelError(ServiceError):
    """The service runs explore-only (no artifact): only explore sessions can be answered."""

    status = 503

    def __init__(
        self,
        msg: str = "no helper model is loaded (explore-only service): create "
        "the session with explore, or load an artifact with POST /admin/reload",
    ) -> None:
        super().__init__(msg)


class FieldError(ServiceError):
    """A request field is invalid in a way the schema cannot express (e.g. feature length)."""

    status = 422

    def __init__(self, loc: Sequence[str | int], msg: str, type_: str = "value_error") -> None:
        super().__init__(msg)
        self.loc = list(loc)
        self.msg = msg
        self.type = type_


def error_body(exc: ServiceError) -> dict[str, object]:
    """Build the JSON body of an error response."""
    if isinstance(exc, FieldError):
        return {"detail": [{"loc": exc.loc, "msg": exc.msg, "type": exc.type}]}
    return {"detail": str(exc)}


def json_safe(value: object) -> object:
    """``value`` with every non-finite float replaced by its JavaScript name (a string)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Map ServiceError and core InputError to HTTP responses (the one place this happens)."""

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)  # noqa: S101 - registered for this type only
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        if isinstance(exc, BudgetStoreUnavailableError):
            headers = {"Retry-After": "1"}
        return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)

    async def core_input_error(request: Request, exc: Exception) -> JSONResponse:
        body = {"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]}
        return JSONResponse(body, status_code=422)

    async def request_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type
        detail = json_safe(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(InputError, core_input_error)
