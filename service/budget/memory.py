"""In-process budget store: the embedded default (one process only), same semantics as Redis.

Each method takes a lock around a plain dict, so the store is atomic under threads as well as
on the event loop. Expiry is lazy: a session whose sliding deadline has passed is gone.
Request-id records live in two generations of at most ``cap`` each, as in Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from service.budget.protocol import (
    Grant,
    Plan,
    PlanMissError,
    Record,
    RequestIdReusedError,
    SessionInfo,
    SessionKey,
    SessionTypesError,
    TypedGrant,
    TypedPlan,
    TypedPlanMissError,
    TypedRecord,
)
from service.errors import SessionClosedError, SessionNotFoundError

__all__ = ["MemoryBudgetStore"]


def _now_ms() -> float:
    return time.time() * 1000.0


@dataclass
class _Entry:
    charged: int
    grant: Any  # Grant, or TypedGrant on a typed session
    digest: str
    at_ms: float  # wall-clock ms the record was written (Redis uses its TIME)


@dataclass
class _Session:
    info: SessionInfo
    deadline: float  # monotonic seconds
    requests: dict[str, _Entry] = field(default_factory=dict)
    old: dict[str, _Entry] = field(default_factory=dict)

    def find(self, request_id: str) -> tuple[dict[str, _Entry], _Entry] | None:
        for gen in (self.requests, self.old):
            if request_id in gen:
                return gen, gen[request_id]
        return None

    def put(self, request_id: str, entry: _Entry, cap: int) -> None:
        if len(self.requests) >= cap:
            self.old, self.requests = self.requests, {}
        self.requests[request_id] = entry


class MemoryBudgetStore:
    """Budgets in a dict guarded by a lock; ``clock`` is monotonic seconds (injectable)."""

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic, cap: int = 1024) -> None:
        self._clock = clock
        self._cap = cap
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
        self,
        key: SessionKey,
        request_id: str | None,
        cost: int,
        plan: Plan | None = None,
        digest: str = "-",
    ) -> Grant:
        """Atomic check-and-consume, idempotent per request id, sliding TTL."""
        with self._lock:
            s = self._live(key)
            if s.info.types:
                raise SessionTypesError(s.info.types, ())
            if request_id:
                found = s.find(request_id)
                if found is not None:
                    entry = found[1]
                    if entry.digest != digest:
                        raise RequestIdReusedError(request_id)
                    return replace(entry.grant, replayed=True)
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
                text = plan.answer_at(before) if plan is not None else ""
                entry = _Entry(before - after, replace(grant, answer=text), digest, _now_ms())
                s.put(request_id, entry, self._cap)
            s.deadline = self._clock() + s.info.ttl_s
            return grant

    async def create_typed(
        self,
        key: SessionKey,
        types: tuple[str, ...],
        budgets: tuple[int, ...],
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a typed session (budget/remaining hold the sums)."""
        info = await self.create(key, sum(budgets), ttl_s, horizon, metadata)
        info = replace(info, types=tuple(types), budgets=tuple(budgets), remainings=tuple(budgets))
        with self._lock:
            self._sessions[key].info = info
        return info

    async def try_consume_typed(
        self,
        key: SessionKey,
        request_id: str | None,
        plan: TypedPlan,
        digest: str = "-",
    ) -> TypedGrant:
        """Atomic check-and-consume of the plan's type (the same rules as the typed script)."""
        with self._lock:
            s = self._live(key)
            if s.info.types != plan.types:
                raise SessionTypesError(s.info.types, plan.types)
            if request_id:
                found = s.find(request_id)
                if found is not None:
                    entry = found[1]
                    if entry.digest != digest:
                        raise RequestIdReusedError(request_id)
                    return replace(entry.grant, replayed=True)
            if s.info.closed:
                raise SessionClosedError(f"session {key.session_id!r} is closed")
            before = s.info.remainings
            i = plan.index(before)
            if i is None:
                raise TypedPlanMissError(before)
            want = plan.actions[i]
            after = list(before)
            action = 0
            if want > 0 and before[want - 1] >= plan.costs[want - 1]:
                action = want
                after[want - 1] -= plan.costs[want - 1]
            grant = TypedGrant(action, want, before, tuple(after))
            if action:
                s.info = replace(s.info, remainings=grant.remaining, remaining=sum(after))
            if request_id:
                text = plan.answer_at(before)
                entry = _Entry(
                    sum(before) - sum(after), replace(grant, answer=text), digest, _now_ms()
                )
                s.put(request_id, entry, self._cap)
            s.deadline = self._clock() + s.info.ttl_s
            return grant

    async def settle(self, key: SessionKey, record: Record) -> bool:
        """Record a degraded answer (same rules as settle.lua; this store never degrades)."""
        return self._settle(key, record)

    def _settle(self, key: SessionKey, record: Record) -> bool:
        with self._lock:
            try:
                s = self._live(key)
            except SessionNotFoundError:
                return False
            found = s.find(record.request_id)
            charged_before, at = 0, _now_ms()
            if found is not None:
                entry = found[1]
                if entry.grant.answer == record.answer or entry.at_ms > record.deadline_ms:
                    return True  # settled already, or a later retry's answer: it stays
                charged_before, at = entry.charged, entry.at_ms
            remaining = s.info.remaining
            after = max(remaining + charged_before - record.charge, 0)
            s.info = replace(s.info, remaining=after)
            grant = Grant(
                record.granted, record.before, record.remaining, record.wanted, answer=record.answer
            )
            entry = _Entry(charged_before + remaining - after, grant, record.digest, at)
            if found is not None:
                found[0][record.request_id] = entry
            else:
                s.put(record.request_id, entry, self._cap)
            return True

    async def settle_typed(self, key: SessionKey, record: TypedRecord) -> bool:
        """Record a degraded typed answer (the rules of settle_typed.lua)."""
        return self._settle_typed(key, record)

    def _settle_typed(self, key: SessionKey, record: TypedRecord) -> bool:
        with self._lock:
            try:
                s = self._live(key)
            except SessionNotFoundError:
                return False
            found = s.find(record.request_id)
            at = _now_ms()
            if found is not None:
                entry = found[1]
                if entry.grant.answer == record.answer or entry.at_ms > record.deadline_ms:
                    return True  # settled already, or a later retry's answer: it stays
                g = entry.grant  # the request's own late charge: refund it
                back = tuple(
                    c + b - a
                    for c, b, a in zip(s.info.remainings, g.before, g.remaining, strict=True)
                )
                s.info = replace(s.info, remainings=back, remaining=sum(back))
                at = entry.at_ms
            grant = TypedGrant(0, 0, record.before, record.before, answer=record.answer)
            entry = _Entry(0, grant, record.digest, at)
            if found is not None:
                found[0][record.request_id] = entry
            else:
                s.put(record.request_id, entry, self._cap)
            return True

    def settle_later(self, key: SessionKey, record: Record | TypedRecord) -> None:
        """Settle now: this store is always reachable."""
        if isinstance(record, TypedRecord):
            self._settle_typed(key, record)
        else:
            self._settle(key, record)

    async def drain(self, timeout_s: float) -> int:
        """Nothing is ever queued."""
        return 0

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
