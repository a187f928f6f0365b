"""A BudgetStore wrapper that times every call and counts failures.

Metrics live here, not in the stores, so both implementations report the same way.
"""

from __future__ import annotations

import time
from typing import Any

from service.budget.protocol import (
    BudgetStore,
    Grant,
    Plan,
    Record,
    SessionInfo,
    SessionKey,
    TypedGrant,
    TypedPlan,
    TypedRecord,
)
from service.errors import BudgetStoreUnavailableError
from service.metrics import Metrics

__all__ = ["InstrumentedStore"]


class InstrumentedStore:
    """Observe helpseek_budget_store_duration_seconds{op} and ..._errors_total{op}."""

    def __init__(self, inner: BudgetStore, metrics: Metrics) -> None:
        self.inner, self.metrics = inner, metrics
        self.kind = inner.kind

    async def _timed(self, op: str, coro: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await coro
        except BudgetStoreUnavailableError:
            self.metrics.child(self.metrics.store_errors, op).inc()
            raise
        finally:
            self.metrics.child(self.metrics.store_duration, op).observe(time.perf_counter() - t0)

    async def create(
        self,
        key: SessionKey,
        budget: int,
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Run ``create``, timed."""
        info: SessionInfo = await self._timed(
            "create", self.inner.create(key, budget, ttl_s, horizon, metadata)
        )
        return info

    async def try_consume(
        self,
        key: SessionKey,
        request_id: str | None,
        cost: int,
        plan: Plan | None = None,
        digest: str = "-",
    ) -> Grant:
        """Run ``try_consume``, timed."""
        grant: Grant = await self._timed(
            "try_consume", self.inner.try_consume(key, request_id, cost, plan, digest)
        )
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
        """Run ``create_typed``, timed (op ``create``)."""
        info: SessionInfo = await self._timed(
            "create", self.inner.create_typed(key, types, budgets, ttl_s, horizon, metadata)
        )
        return info

    async def try_consume_typed(
        self, key: SessionKey, request_id: str | None, plan: TypedPlan, digest: str = "-"
    ) -> TypedGrant:
        """Run ``try_consume_typed``, timed (op ``try_consume``)."""
        grant: TypedGrant = await self._timed(
            "try_consume", self.inner.try_consume_typed(key, request_id, plan, digest)
        )
        return grant

    async def settle(self, key: SessionKey, record: Record) -> bool:
        """Run ``settle``, timed."""
        ok: bool = await self._timed("settle", self.inner.settle(key, record))
        return ok

    async def settle_typed(self, key: SessionKey, record: TypedRecord) -> bool:
        """Run ``settle_typed``, timed (op ``settle``)."""
        ok: bool = await self._timed("settle", self.inner.settle_typed(key, record))
        return ok

    def settle_later(self, key: SessionKey, record: Record | TypedRecord) -> None:
        """Queue a settlement (untimed: it returns at once)."""
        self.inner.settle_later(key, record)

    async def drain(self, timeout_s: float) -> int:
        """Wait for queued settlements."""
        return await self.inner.drain(timeout_s)

    async def remaining(self, key: SessionKey) -> int:
        """Run ``remaining``, timed."""
        n: int = await self._timed("remaining", self.inner.remaining(key))
        return n

    async def describe(self, key: SessionKey) -> SessionInfo:
        """Run ``describe``, timed."""
        info: SessionInfo = await self._timed("describe", self.inner.describe(key))
        return info

    async def close(self, key: SessionKey, success: bool, steps: int) -> SessionInfo:
        """Run ``close``, timed."""
        info: SessionInfo = await self._timed("close", self.inner.close(key, success, steps))
        return info

    async def ping(self) -> bool:
        """Untimed ping (readiness probes would drown the histogram)."""
        return await self.inner.ping()

    async def aclose(self) -> None:
        """Close the inner store."""
        await self.inner.aclose()
