"""Redis budget store: one Lua script does check-and-consume (``check_and_consume.lua``).

Keys: ``<prefix>{tenant:session}`` (hash) and ``<prefix>{tenant:session}:req`` (request ids),
sharing one hash tag so every command touches one Cluster slot. The client has short
timeouts, one immediate retry (a pooled connection gone stale after a Redis restart) and
no backoff loop. After an error the store answers "unavailable" at once for
``cooldown_s`` seconds instead of waiting on a dead server, then tries again: recovery is
automatic.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from service.budget.protocol import Grant, Plan, PlanMissError, SessionInfo, SessionKey
from service.errors import BudgetStoreUnavailableError, SessionClosedError, SessionNotFoundError

__all__ = ["RedisBudgetStore", "load_script", "make_client"]


def load_script() -> str:
    """Text of the check-and-consume Lua script shipped with the package."""
    return resources.files("service.budget").joinpath("check_and_consume.lua").read_text()


def make_client(url: str, connect_timeout_s: float, socket_timeout_s: float) -> Redis:
    """One asyncio client (with its pool) per process: short timeouts, one quick retry."""
    return Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), retries=1),
        decode_responses=True,
        health_check_interval=0,
    )


class RedisBudgetStore:
    """Budgets in Redis hashes; all mutation of ``remaining`` goes through the Lua script."""

    kind = "redis"

    def __init__(self, client: Redis, prefix: str = "helpseek:", cooldown_s: float = 0.5) -> None:
        self._r = client
        self._prefix = prefix
        self._cooldown_s = cooldown_s
        self._down_until = 0.0
        self._script = client.register_script(load_script())

    def _keys(self, key: SessionKey) -> tuple[str, str]:
        base = f"{self._prefix}{{{key.tag}}}"
        return base, base + ":req"

    def _check_breaker(self) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise BudgetStoreUnavailableError(
                "budget store unavailable (cooling down after an error)"
            )

    def _tripped(self, exc: Exception) -> BudgetStoreUnavailableError:
        self._down_until = time.monotonic() + self._cooldown_s
        return BudgetStoreUnavailableError(f"budget store unavailable: {type(exc).__name__}: {exc}")

    async def create(
        self,
        key: SessionKey,
        budget: int,
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a session: one MULTI with HSET + PEXPIRE."""
        self._check_breaker()
        k, req = self._keys(key)
        now = time.time()
        ttl_ms = max(int(ttl_s * 1000), 1)
        fields: dict[str, str | int] = {
            "budget": budget,
            "remaining": budget,
            "horizon": -1 if horizon is None else horizon,
            "ttl_ms": ttl_ms,
            "created_at": repr(now),
            "closed": 0,
            "metadata": json.dumps(metadata or {}),
        }
        try:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(k, req)
                pipe.hset(k, mapping=fields)  # type: ignore[arg-type]
                pipe.pexpire(k, ttl_ms)
                await pipe.execute()
        except RedisError as exc:
            raise self._tripped(exc) from exc
        self._down_until = 0.0
        return SessionInfo(
            budget, budget, horizon, float(ttl_s), now + ttl_s, now, metadata=dict(metadata or {})
        )

    async def try_consume(
        self, key: SessionKey, request_id: str | None, cost: int, plan: Plan | None = None
    ) -> Grant:
        """One EVALSHA of check_and_consume.lua (see the script for the exact contract)."""
        self._check_breaker()
        lo, wants = (plan.lo, plan.encode()) if plan is not None else (0, "")
        try:
            out = await self._script(
                keys=list(self._keys(key)), args=[request_id or "", cost, lo, wants]
            )
        except RedisError as exc:
            raise self._tripped(exc) from exc
        self._down_until = 0.0
        status, granted, before, after, wanted, replayed = (int(v) for v in out)
        if status == -1:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        if status == -3:
            raise SessionClosedError(f"session {key.session_id!r} is closed")
        if status == -2:
            raise PlanMissError(before)
        return Grant(bool(granted), before, after, bool(wanted), bool(replayed))

    async def remaining(self, key: SessionKey) -> int:
        """HGET remaining."""
        return (await self.describe(key)).remaining

    async def describe(self, key: SessionKey) -> SessionInfo:
        """HGETALL + PTTL in one pipeline."""
        self._check_breaker()
        k, _ = self._keys(key)
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.hgetall(k)
                pipe.pttl(k)
                fields, pttl = await pipe.execute()
        except RedisError as exc:
            raise self._tripped(exc) from exc
        self._down_until = 0.0
        if not fields or "ttl_ms" not in fields:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        return _info(fields, pttl)

    async def close(self, key: SessionKey, success: bool, steps: int) -> SessionInfo:
        """Record the outcome once (WATCH/MULTI; a concurrent change retries once)."""
        self._check_breaker()
        k, req = self._keys(key)
        try:
            for _ in range(3):
                async with self._r.pipeline(transaction=True) as pipe:
                    await pipe.watch(k)
                    fields: dict[str, str] = await pipe.hgetall(k)  # type: ignore[assignment]
                    if not fields or "ttl_ms" not in fields:
                        raise SessionNotFoundError(
                            f"session {key.session_id!r} not found or expired"
                        )
                    if fields.get("closed") == "1":
                        raise SessionClosedError(
                            f"session {key.session_id!r} already has an outcome"
                        )
                    pipe.multi()
                    pipe.hset(k, mapping={"closed": 1, "success": int(success), "steps": steps})
                    pipe.pexpire(k, int(fields["ttl_ms"]))
                    pipe.pexpire(req, int(fields["ttl_ms"]))
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    fields.update(closed="1", success=str(int(success)), steps=str(steps))
                    self._down_until = 0.0
                    return _info(fields, int(fields["ttl_ms"]))
        except RedisError as exc:
            raise self._tripped(exc) from exc
        raise BudgetStoreUnavailableError("budget store: outcome kept conflicting, try again")

    async def ping(self) -> bool:
        """PING (ignores the cooldown, so readiness probes see recovery first)."""
        try:
            ok = bool(await self._r.ping())
        except RedisError:
            return False
        if ok:
            self._down_until = 0.0
        return ok

    async def aclose(self) -> None:
        """Close the client and its pool."""
        await self._r.aclose()


def _info(fields: dict[str, str], pttl: int) -> SessionInfo:
    horizon = int(fields.get("horizon", -1))
    now = time.time()
    success = fields.get("success")
    steps = fields.get("steps")
    return SessionInfo(
        budget=int(fields["budget"]),
        remaining=int(fields["remaining"]),
        horizon=None if horizon < 0 else horizon,
        ttl_s=int(fields["ttl_ms"]) / 1000.0,
        expires_at=now + max(int(pttl), 0) / 1000.0,
        created_at=float(fields.get("created_at", now)),
        closed=fields.get("closed") == "1",
        success=None if success is None else success == "1",
        steps=None if steps is None else int(steps),
        metadata=json.loads(fields.get("metadata", "{}")),
    )
