"""The typed half of the Redis budget store: sessions with a budget per intervention type.

:class:`TypedRedisOps` is mixed into :class:`service.budget.redis_store.RedisBudgetStore`
(kept apart so each module stays short); it uses that store's client, key layout, breaker and
Redis-time deadline, and ``check_and_consume_typed.lua`` (its header is the exact contract).
Budget vectors travel as comma-joined integers (``'3,1'``), type names likewise.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from service.budget.protocol import (
    RequestIdReusedError,
    SessionInfo,
    SessionKey,
    SessionTypesError,
    TypedGrant,
    TypedPlan,
    TypedPlanMissError,
    TypedRecord,
)
from service.errors import BudgetStoreUnavailableError, SessionClosedError, SessionNotFoundError

__all__ = ["TypedRedisOps", "ints", "names", "vec"]


def vec(values: tuple[int, ...]) -> str:
    """(3, 1) -> '3,1'."""
    return ",".join(str(int(v)) for v in values)


def ints(text: str) -> tuple[int, ...]:
    """'3,1' -> (3, 1); '' -> ()."""
    return tuple(int(v) for v in text.split(",")) if text else ()


def names(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'); '' -> ()."""
    return tuple(text.split(",")) if text else ()


class TypedRedisOps:
    """``create_typed`` and ``try_consume_typed`` over the store's Redis client."""

    if TYPE_CHECKING:  # provided by RedisBudgetStore
        _session: Any
        _consume_typed: Any
        _settle_typed: Any
        _pending: Any
        _cap: int
        _client_errors: tuple[type[Exception], ...]

        def _keys(self, key: SessionKey) -> list[str]: ...
        def _check_breaker(self, key: SessionKey) -> None: ...
        def _tripped(
            self, key: SessionKey, exc: Exception | str
        ) -> BudgetStoreUnavailableError: ...
        def _healthy(self, key: SessionKey) -> None: ...
        def _observe(self, redis_ms: float, local_recv_ms: float) -> None: ...
        async def _ready(self) -> None: ...
        async def _deadline(self) -> float: ...
        async def _settle_pending(self, key: SessionKey) -> None: ...
        def _remember_failed(
            self, key: SessionKey, request_id: str | None, deadline: float
        ) -> None: ...

    async def create_typed(
        self,
        key: SessionKey,
        types: tuple[str, ...],
        budgets: tuple[int, ...],
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a typed session (session.lua 'create' with the types and per-type budgets)."""
        self._check_breaker(key)
        now = time.time()
        ttl_ms = max(int(ttl_s * 1000), 1)
        args: list[str | int] = [
            "create",
            sum(budgets),
            ttl_ms,
            -1 if horizon is None else horizon,
            repr(now),
            json.dumps(metadata or {}),
            ",".join(types),
            vec(budgets),
        ]
        try:
            await self._ready()
            await self._session(keys=self._keys(key), args=args)
        except self._client_errors as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        return SessionInfo(
            sum(budgets),
            sum(budgets),
            horizon,
            float(ttl_s),
            now + ttl_s,
            now,
            metadata=dict(metadata or {}),
            types=tuple(types),
            budgets=tuple(budgets),
            remainings=tuple(budgets),
        )

    async def try_consume_typed(
        self,
        key: SessionKey,
        request_id: str | None,
        plan: TypedPlan,
        digest: str = "-",
    ) -> TypedGrant:
        """One EVALSHA of check_and_consume_typed.lua (see the script for the contract)."""
        self._check_breaker(key)
        deadline = 0.0
        try:
            await self._ready()
            if self._pending and key in self._pending:
                await self._settle_pending(key)
            deadline = await self._deadline()
            out = await self._consume_typed(
                keys=self._keys(key),
                args=[
                    request_id or "",
                    ",".join(plan.types),
                    vec(plan.costs),
                    vec(plan.lo),
                    vec(plan.dims),
                    plan.encode(),
                    f"{deadline:.3f}",
                    digest,
                    self._cap,
                    plan.answer_tail,
                    "\n".join(plan.answers),
                ],
            )
        except self._client_errors as exc:
            self._remember_failed(key, request_id, deadline)
            raise self._tripped(key, exc) from exc
        self._observe(float(out[5]), time.time() * 1000.0)
        status = int(out[0])
        if status == -4:
            raise self._tripped(key, "the script started after its deadline (Redis was slow)")
        self._healthy(key)
        if status == -1:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        if status == -6:
            raise SessionTypesError(names(str(out[6])), plan.types)
        if status == -3:
            raise SessionClosedError(f"session {key.session_id!r} is closed")
        if status == -2:
            raise TypedPlanMissError(ints(str(out[2])))
        if status == -5:
            raise RequestIdReusedError(request_id or "")
        return TypedGrant(
            int(out[1]), int(out[4]), ints(str(out[2])), ints(str(out[3])), status == 1, str(out[6])
        )

    async def settle_typed(self, key: SessionKey, record: TypedRecord) -> bool:
        """One EVALSHA of settle_typed.lua; False when the session is gone."""
        args: list[str | int] = [
            record.request_id,
            record.digest,
            self._cap,
            vec(record.before),
            f"{record.deadline_ms:.3f}",
            record.answer,
        ]
        try:
            await self._ready()
            out = await self._settle_typed(keys=self._keys(key), args=args)
        except self._client_errors as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        return int(out[0]) >= 0
