"""Exceptions raised by the HelpSeek client SDK.

Every error the SDK raises is a :class:`HelpSeekClientError`, so ``except
HelpSeekClientError`` is enough to stay up when the service is not::

    HelpSeekClientError
    ├── APIError(status, detail)        the service answered with an error status
    │   ├── ValidationError             400 / 422: a field was rejected (``detail`` names it)
    │   ├── AuthError                   401 / 403: missing or wrong API key
    │   ├── NotFoundError               404: unknown session (or another tenant's)
    │   ├── ConflictError               409: the outcome was already reported
    │   └── ServiceUnavailable          503 (fail-closed mode, load shedding) after retries
    ├── TransportError                  no answer: connection refused, timeout (after retries)
    └── UnexpectedResponse              a 2xx answer that is not the JSON the contract promises
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthError",
    "ConflictError",
    "HelpSeekClientError",
    "NotFoundError",
    "ServiceUnavailable",
    "TransportError",
    "UnexpectedResponse",
    "ValidationError",
    "error_for_status",
]


class HelpSeekClientError(Exception):
    """Root of every error raised by the SDK."""


class APIError(HelpSeekClientError):
    """The service answered with an error status; ``detail`` is its JSON ``detail`` field."""

    def __init__(self, status: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path
        super().__init__(f"{method} {path} -> {status}: {describe_detail(detail)}".strip())


class ValidationError(APIError):
    """400 / 422: the request was rejected; ``fields`` lists ``(location, message)`` pairs."""

    @property
    def fields(self) -> list[tuple[str, str]]:
        """``[("body.step", "Input should be greater than or equal to 0"), ...]``."""
        if not isinstance(self.detail, list):
            return []
        out = []
        for item in self.detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                out.append((loc, str(item.get("msg", ""))))
        return out


class AuthError(APIError):
    """401 / 403: the API key is missing or not accepted."""


class NotFoundError(APIError):
    """404: the session does not exist, expired, or belongs to another tenant."""


class ConflictError(APIError):
    """409: the request conflicts with the session's state (outcome already reported)."""


class ServiceUnavailable(APIError):
    """503: the service refused to answer (fail-closed mode or shedding load), after retries."""


class TransportError(HelpSeekClientError):
    """No HTTP answer at all (connection refused, reset, timeout), after retries."""


class UnexpectedResponse(HelpSeekClientError):
    """A success status whose body is not the JSON object the contract describes."""


def describe_detail(detail: Any) -> str:
    """Render a FastAPI ``detail`` (a string or a list of ``{loc, msg}``) on one line."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    503: ServiceUnavailable,
}


def error_for_status(status: int, detail: Any, method: str = "", path: str = "") -> APIError:
    """Return the most specific :class:`APIError` subclass for an HTTP error status."""
    return _BY_STATUS.get(status, APIError)(status, detail, method, path)
