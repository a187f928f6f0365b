"""Request-scoped dependencies as ``Annotated`` aliases, and the per-process service state."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Authenticator
from service.budget.protocol import BudgetStore, SessionKey
from service.decision_log import DecisionLog
from service.metrics import Metrics
from service.model_holder import ModelHolder
from service.settings import Settings

__all__ = [
    "Admin",
    "CachedSession",
    "ServiceState",
    "Svc",
    "Tenant",
    "get_svc",
    "get_tenant",
    "require_admin",
]


@dataclass
class CachedSession:
    """What this process remembers of a session: immutable budget and horizon, last remaining."""

    budget: int
    horizon: int | None
    remaining: int
    types: tuple[str, ...] = ()  # typed sessions: type names and last remaining per type
    remainings: tuple[int, ...] = ()
    explore_p: float | None = None  # explore sessions (service.explore)


@dataclass
class ServiceState:
    """Everything the lifespan builds; one per process."""

    settings: Settings
    metrics: Metrics
    auth: Authenticator
    holder: ModelHolder
    store: BudgetStore
    log: DecisionLog
    sessions: OrderedDict[SessionKey, CachedSession] = field(default_factory=OrderedDict)
    explore_swept: int = 0  # sessions given a p from the explore schedule so far

    def remember(self, key: SessionKey, entry: CachedSession) -> None:
        """Cache a session's info (bounded, oldest out first)."""
        self.sessions[key] = entry
        self.sessions.move_to_end(key)
        while len(self.sessions) > self.settings.session_cache_size:
            self.sessions.popitem(last=False)


async def get_svc(request: Request) -> ServiceState:
    """Return the process's ServiceState (set by the lifespan)."""
    svc: ServiceState = request.app.state.svc
    return svc


_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


async def get_tenant(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> str:
    """Authenticate the caller; return its tenant id (AuthError -> 401)."""
    presented = bearer.credentials if bearer is not None else api_key
    svc: ServiceState = request.app.state.svc
    return svc.auth.tenant(presented)


async def require_admin(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> None:
    """Admin role for /admin/* (service.auth): AuthError -> 401, ForbiddenError -> 403."""
    presented = bearer.credentials if bearer is not None else api_key
    svc: ServiceState = request.app.state.svc
    svc.auth.admin(presented, request.client.host if request.client else None)


Svc = Annotated[ServiceState, Depends(get_svc)]
Admin = Annotated[None, Depends(require_admin)]
Tenant = Annotated[str, Depends(get_tenant)]
