"""In-process budget store: the embedded default (one process only), same semantics as Redis.

Each method takes a lock around a plain dict, so the store is atomic under threads as well as
on the event loop. Expiry is lazy: a session whose sliding deadline has passed is gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from service.budget.protocol import Grant, Plan, PlanMissError, SessionInfo, SessionKey
from service.errors import SessionClosedError, SessionNotFoundError

__all__ = ["MemoryBudgetStore"]


@dataclass
class _Session:
    info: SessionInfo
    deadline: float  # monotonic seconds
    requests: dict[str, Grant] = field(default_factory=dict)


class MemoryBudgetStore:
    """Budgets in a dict guarded by a lock; ``clock`` is monotonic seconds (injectable)."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, _Session] = {}

    def _live(self, key: SessionKey) -> _Session:
        s = self._sessions.get(key)
        if s is None or s.deadline <= self._clock():
            self._sessions.pop(key, None)
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        return s

    def _view(self, s: _Session) -> SessionInfo:
        return replace(s.info, expires_at=time.time() + max(s.deadline - self._clock(), 0.0))

    async def create(
        self,
        key: SessionKey,
        budget: int,
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a session (see :class:`service.budget.protocol.BudgetStore`)."""
        info = SessionInfo(
            budget=budget,
            remaining=budget,
            horizon=horizon,
            ttl_s=float(ttl_s),
            expires_at=time.time() + ttl_s,
            created_at=time.time(),
            metadata=dict(metadata or {}),
        )
        with self._lock:
            self._sessions[key] = _Session(info, self._clock() + ttl_s)
            if len(self._sessions) % 1024 == 0:
                self._purge()
        return info

    def _purge(self) -> None:
        now = self._clock()
        for k in [k for k, s in self._sessions.items() if s.deadline <= now]:
            del self._sessions[k]

    async def try_consume(
        self, key: SessionKey, request_id: str | None, cost: int, plan: Plan | None = None
    ) -> Grant:
        """Atomic check-and-consume, idempotent per request id, sliding TTL."""
        with self._lock:
            s = self._live(key)
            if request_id and request_id in s.requests:
                return replace(s.requests[request_id], replayed=True)
            if s.info.closed:
                raise SessionClosedError(f"session {key.session_id!r} is closed")
            before = s.info.remaining
            want = True
            if plan is not None:
                if not plan.covers(before):
                    raise PlanMissError(before)
                want = plan.wants_at(before)
            granted = want and before >= cost
            after = before - cost if granted else before
            grant = Grant(granted=granted, before=before, remaining=after, wanted=want)
            if granted:
                s.info = replace(s.info, remaining=after)
            if request_id:
                s.requests[request_id] = grant
            s.deadline = self._clock() + s.info.ttl_s
            return grant

    async def remaining(self, key: SessionKey) -> int:
        """Peek at the remaining budget."""
        with self._lock:
            return self._live(key).info.remaining

    async def describe(self, key: SessionKey) -> SessionInfo:
        """Peek at the whole session."""
        with self._lock:
            return self._view(self._live(key))

    async def close(self, key: SessionKey, success: bool, steps: int) -> SessionInfo:
        """Record the outcome once; a second report raises SessionClosedError."""
        with self._lock:
            s = self._live(key)
            if s.info.closed:
                raise SessionClosedError(f"session {key.session_id!r} already has an outcome")
            s.info = replace(s.info, closed=True, success=success, steps=steps)
            s.deadline = self._clock() + s.info.ttl_s
            return self._view(s)

    async def ping(self) -> bool:
        """Report the in-process store as reachable (always)."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
        with self._lock:
            self._sessions.clear()
