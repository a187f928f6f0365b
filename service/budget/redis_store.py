"""Redis budget store: every mutation is one Lua script, so it runs on Redis or Redis Cluster.

Keys: ``<prefix>{tenant:session}`` (hash), ``...:req`` and ``...:req:old`` (request-id
records, two generations of at most ``cap``), sharing one hash tag so every script touches one
Cluster slot. ``check_and_consume.lua`` is the hot path (one round trip per decision). It
carries a deadline in Redis time: a script that starts after the client stopped waiting
writes nothing, so a slow Redis cannot charge for an answer the client never received. The
client has short timeouts, one immediate retry on a broken connection (a pooled connection
gone stale after a restart; never after a timeout) and no backoff loop. After an error the
store answers "unavailable" at once for ``cooldown_s`` seconds, then tries again. Degraded
answers are queued and settled (``settle.lua``) in the background once Redis answers.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import time
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from service.budget.protocol import (
    Grant,
    Plan,
    PlanMissError,
    Record,
    RequestIdReusedError,
    SessionInfo,
    SessionKey,
    SessionTypesError,
    TypedRecord,
)
from service.budget.redis_typed import TypedRedisOps, ints, names
from service.errors import BudgetStoreUnavailableError, SessionClosedError, SessionNotFoundError

__all__ = ["RedisBudgetStore", "load_script", "make_client"]

_log = logging.getLogger("helpseek.service")
_OFFSET_WINDOW_S = 10.0  # clock-offset samples older than two windows are forgotten
_SETTLE_QUEUE = 10_000  # degraded answers waiting for Redis (oldest dropped beyond)
# What a call to Redis may raise when the server is slow, dead or failing over. AttributeError:
# redis-py's async Cluster client can hand out a connection another task just closed while
# the topology is being refreshed (a closed writer); it means "unavailable", never a 500.
_CLIENT_ERRORS = (RedisError, RedisClusterException, OSError, AttributeError)


def load_script(name: str = "check_and_consume.lua") -> str:
    """Text of one of the Lua scripts shipped with the package."""
    return resources.files("service.budget").joinpath(name).read_text()


def make_client(
    url: str, connect_timeout_s: float, socket_timeout_s: float
) -> Redis | RedisCluster:
    """One asyncio client (with its pool) per process: short timeouts, one quick retry.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) builds a Redis Cluster client
    seeded from that node; any other URL a plain client.
    """
    common: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": socket_timeout_s,
        "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        "decode_responses": True,
        "health_check_interval": 0,
    }
    scheme, sep, rest = url.partition("://")
    if scheme.endswith("+cluster") and sep:
        seed = f"{scheme.removesuffix('+cluster')}://{rest}"
        return RedisCluster.from_url(seed, require_full_coverage=False, **common)
    return Redis.from_url(url, **common)


class RedisBudgetStore(TypedRedisOps):
    """Budgets in Redis hashes; all mutation goes through the Lua scripts."""

    kind = "redis"
    _client_errors = _CLIENT_ERRORS

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str = "helpseek:",
        cooldown_s: float = 0.5,
        deadline_s: float = 0.2,
        cap: int = 1024,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self._cooldown_s = cooldown_s
        self._deadline_ms = deadline_s * 1000.0
        self._cap = cap
        # circuit breaker: monotonic time until which a slot is skipped (one entry off Cluster)
        self._down_until: dict[int, float] = {}
        self._cluster = isinstance(client, RedisCluster)
        self._init_lock = asyncio.Lock()
        self._consume = client.register_script(load_script())
        self._settle = client.register_script(load_script("settle.lua"))
        self._session = client.register_script(load_script("session.lua"))
        self._consume_typed = client.register_script(load_script("check_and_consume_typed.lua"))
        self._settle_typed = client.register_script(load_script("settle_typed.lua"))
        # lower bounds of (Redis clock - local clock) in ms: max over the current and last window
        self._offset: list[float | None] = [None, None]
        self._offset_epoch = 0.0
        self._queue: collections.OrderedDict[tuple[SessionKey, str], Record | TypedRecord] = (
            collections.OrderedDict()
        )
        self._failed: collections.OrderedDict[tuple[SessionKey, str], float] = (
            collections.OrderedDict()
        )
        self._pending: collections.Counter[SessionKey] = collections.Counter()  # queued per key
        self._settler: asyncio.Task[None] | None = None
        self.settle_dropped = 0

    def _keys(self, key: SessionKey) -> list[str]:
        base = f"{self._prefix}{{{key.tag}}}"
        return [base, base + ":req", base + ":req:old"]

    def _slot(self, key: SessionKey) -> int:
        """Breaker entry of a key: its Cluster hash slot (a dead node trips only its own)."""
        return key_slot(key.tag.encode()) if self._cluster else 0

    def _check_breaker(self, key: SessionKey) -> None:
        until = self._down_until.get(self._slot(key))
        if until is not None and time.monotonic() < until:
            raise BudgetStoreUnavailableError(
                "budget store unavailable (cooling down after an error)"
            )

    def _tripped(self, key: SessionKey, exc: Exception | str) -> BudgetStoreUnavailableError:
        self._down_until[self._slot(key)] = time.monotonic() + self._cooldown_s
        why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        return BudgetStoreUnavailableError(f"budget store unavailable: {why}")

    def _healthy(self, key: SessionKey) -> None:
        if self._down_until:
            self._down_until.pop(self._slot(key), None)

    async def _ready(self) -> None:
        """Initialise a Cluster client once, under a lock.

        redis-py's async cluster client initialises lazily on every command that finds it
        uninitialised; concurrent first commands then re-create each other's connections
        (seen here as AttributeError on a closed writer).
        """
        r = self._r
        if isinstance(r, RedisCluster) and r._initialize:  # noqa: SLF001
            async with self._init_lock:
                if r._initialize:  # noqa: SLF001
                    await r.initialize()

    # -- clock offset: Redis TIME vs local time, from every reply (a lower bound each) --------

    def _observe(self, redis_ms: float, local_recv_ms: float) -> None:
        sample = redis_ms - local_recv_ms
        now = time.monotonic()
        if now - self._offset_epoch > _OFFSET_WINDOW_S:
            self._offset = [self._offset[1], None]
            self._offset_epoch = now
        cur = self._offset[1]
        self._offset[1] = sample if cur is None else max(cur, sample)

    def _offset_ms(self) -> float | None:
        known = [o for o in self._offset if o is not None]
        return max(known) if known else None

    async def _deadline(self) -> float:
        """Return the Redis-time deadline for a script sent now (calibrates once with TIME)."""
        offset = self._offset_ms()
        if offset is None:
            sec, usec = await self._r.time()
            self._observe(sec * 1000.0 + usec / 1000.0, time.time() * 1000.0)
            offset = self._offset_ms()
            assert offset is not None  # noqa: S101 - just observed
        return time.time() * 1000.0 + self._deadline_ms + offset

    # -- the protocol ------------------------------------------------------------------------

    async def create(
        self,
        key: SessionKey,
        budget: int,
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a session (session.lua 'create': drops any old records of the same key)."""
        self._check_breaker(key)
        now = time.time()
        ttl_ms = max(int(ttl_s * 1000), 1)
        args: list[str | int] = [
            "create",
            budget,
            ttl_ms,
            -1 if horizon is None else horizon,
            repr(now),
            json.dumps(metadata or {}),
        ]
        try:
            await self._ready()
            await self._session(keys=self._keys(key), args=args)
        except _CLIENT_ERRORS as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        return SessionInfo(
            budget, budget, horizon, float(ttl_s), now + ttl_s, now, metadata=dict(metadata or {})
        )

    async def try_consume(
        self,
        key: SessionKey,
        request_id: str | None,
        cost: int,
        plan: Plan | None = None,
        digest: str = "-",
    ) -> Grant:
        """One EVALSHA of check_and_consume.lua (see the script for the exact contract)."""
        self._check_breaker(key)
        lo, wants, heads, tail = (
            (plan.lo, plan.encode(), "\n".join(plan.answers), plan.answer_tail)
            if plan
            else (0, "", "", "")
        )
        deadline = 0.0
        try:
            await self._ready()
            if self._pending and key in self._pending:
                await self._settle_pending(key)
            deadline = await self._deadline()
            out = await self._consume(
                keys=self._keys(key),
                args=[
                    request_id or "",
                    cost,
                    lo,
                    wants,
                    f"{deadline:.3f}",
                    digest,
                    self._cap,
                    tail,
                    heads,
                ],
            )
        except _CLIENT_ERRORS as exc:
            self._remember_failed(key, request_id, deadline)
            raise self._tripped(key, exc) from exc
        self._observe(float(out[5]), time.time() * 1000.0)
        status = int(out[0])
        if status == -4:
            raise self._tripped(key, "the script started after its deadline (Redis was slow)")
        self._healthy(key)
        granted, before, after, wanted = (int(v) for v in out[1:5])
        if status == -1:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        if status == -3:
            raise SessionClosedError(f"session {key.session_id!r} is closed")
        if status == -2:
            raise PlanMissError(before)
        if status == -5:
            raise RequestIdReusedError(request_id or "")
        if status == -6:
            raise SessionTypesError(names(str(out[6])), ())
        return Grant(bool(granted), before, after, bool(wanted), status == 1, str(out[6]))

    async def settle(self, key: SessionKey, record: Record) -> bool:
        """One EVALSHA of settle.lua; False when the session is gone."""
        args: list[str | int] = [
            record.request_id,
            record.charge,
            record.digest,
            self._cap,
            int(record.granted),
            record.before,
            record.remaining,
            int(record.wanted),
            f"{record.deadline_ms:.3f}",
            record.answer,
        ]
        try:
            await self._ready()
            out = await self._settle(keys=self._keys(key), args=args)
        except _CLIENT_ERRORS as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        return int(out[0]) >= 0

    def _remember_failed(self, key: SessionKey, request_id: str | None, deadline: float) -> None:
        """Keep the deadline of a script whose answer never came (read by settle_later)."""
        if request_id and deadline:
            self._failed[(key, request_id)] = deadline
            while len(self._failed) > _SETTLE_QUEUE:
                self._failed.popitem(last=False)

    def settle_later(self, key: SessionKey, record: Record | TypedRecord) -> None:
        """Queue the record; a background task settles the queue once Redis answers.

        The record gets the deadline of the request's own failed script, if one was sent.
        """
        sent = self._failed.pop((key, record.request_id), 0.0)
        if not record.deadline_ms and sent:
            record = dataclasses.replace(record, deadline_ms=sent)
        if (key, record.request_id) not in self._queue:
            self._pending[key] += 1
        self._queue[(key, record.request_id)] = record
        while len(self._queue) > _SETTLE_QUEUE:
            (dropped, _), _ = self._queue.popitem(last=False)
            self._unpend(dropped)
            self.settle_dropped += 1
        if self._settler is None or self._settler.done():
            self._settler = asyncio.get_running_loop().create_task(self._run_settler())

    async def _run_settler(self) -> None:
        while self._queue:
            (key, rid), record = next(iter(self._queue.items()))
            wait = self._down_until.get(self._slot(key), 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._settle_any(key, record)
            except BudgetStoreUnavailableError:
                await asyncio.sleep(max(self._cooldown_s, 0.05))
                continue
            self._settled(key, rid, record)

    async def _settle_any(self, key: SessionKey, record: Record | TypedRecord) -> None:
        if isinstance(record, TypedRecord):
            await self.settle_typed(key, record)
        else:
            await self.settle(key, record)

    def _settled(self, key: SessionKey, rid: str, record: Record | TypedRecord) -> None:
        if self._queue.get((key, rid)) is record:
            del self._queue[(key, rid)]
            self._unpend(key)

    def _unpend(self, key: SessionKey) -> None:
        self._pending[key] -= 1
        if self._pending[key] <= 0:
            del self._pending[key]

    async def _settle_pending(self, key: SessionKey) -> None:
        """Settle this session's queued answers first, so a decision sees their charges."""
        for (k, rid), record in [(kr, r) for kr, r in self._queue.items() if kr[0] == key]:
            await self._settle_any(k, record)
            self._settled(k, rid, record)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the settle queue to empty; return what is left."""
        end = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return len(self._queue)

    async def remaining(self, key: SessionKey) -> int:
        """Return the remaining budget (via describe)."""
        return (await self.describe(key)).remaining

    async def describe(self, key: SessionKey) -> SessionInfo:
        """session.lua 'describe' (HGETALL + PTTL in one read-only script)."""
        self._check_breaker(key)
        try:
            await self._ready()
            out = await self._session(keys=self._keys(key), args=["describe"])
        except _CLIENT_ERRORS as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        if int(out[0]) == -1 and len(out) == 1:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        return _info(_pairs(out[1:]), int(out[0]))

    async def close(self, key: SessionKey, success: bool, steps: int) -> SessionInfo:
        """Record the outcome once (session.lua 'close', atomic)."""
        self._check_breaker(key)
        try:
            await self._ready()
            out = await self._session(keys=self._keys(key), args=["close", int(success), steps])
        except _CLIENT_ERRORS as exc:
            raise self._tripped(key, exc) from exc
        self._healthy(key)
        status = int(out[0])
        if status == -1:
            raise SessionNotFoundError(f"session {key.session_id!r} not found or expired")
        if status == -3:
            raise SessionClosedError(f"session {key.session_id!r} already has an outcome")
        fields = _pairs(out[1:])
        return _info(fields, int(fields["ttl_ms"]))

    async def ping(self) -> bool:
        """PING (ignores the cooldown, so readiness probes see recovery first)."""
        try:
            await self._ready()
            ok = bool(await self._r.ping())
        except _CLIENT_ERRORS:
            return False
        if ok:
            self._down_until.clear()
        return ok

    async def aclose(self) -> None:
        """Give queued settlements a moment, then close the client and its pool."""
        if self._queue:
            left = await self.drain(1.0)
            if left:
                _log.warning("budget store: %d degraded answers left unsettled", left)
        if self._settler is not None:
            self._settler.cancel()
        await self._r.aclose()


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


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
        types=names(fields.get("types", "")),
        budgets=ints(fields.get("budgets", "")),
        remainings=ints(fields.get("remainings", "")),
    )
