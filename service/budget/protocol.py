"""The budget-store contract (STYLE.md §8): one Protocol, two implementations, one test suite.

A session's budget lives under a key hash-tagged ``{tenant:session}``. ``try_consume`` is the
only mutation on the hot path and is atomic: it reads the remaining budget, decides whether
to charge (``plan``), charges at most ``cost``, records the answer text under the request id
(with a digest of the request body) so a retry replays it without a second charge, and slides
the TTL. A refusal writes no budget. ``settle`` records an answer given while the store was
unreachable (a degraded answer), so the budget and later replays agree with what the client
received. Request-id records are kept in two generations of at most ``cap`` each per session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BudgetStore",
    "Grant",
    "Plan",
    "PlanMissError",
    "Record",
    "RequestIdReusedError",
    "SessionInfo",
    "SessionKey",
]


@dataclass(frozen=True)
class SessionKey:
    """A session as the store sees it: the tenant namespace plus the session id."""

    tenant: str
    session_id: str

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag body, ``tenant:session``."""
        return f"{self.tenant}:{self.session_id}"


@dataclass(frozen=True)
class Plan:
    """Whether to intervene at each remaining budget ``lo .. lo + len(wants) - 1``.

    The service scores the state for every budget level the session could be at, then lets
    the store pick the entry for the budget it actually holds, atomically. This keeps one
    round trip per decision and makes the decision consistent with the charge.
    """

    lo: int
    wants: tuple[bool, ...]
    answers: tuple[str, ...] = ()  # answer text per budget level (without the tail), no '\n'
    answer_tail: str = ""  # appended to each: the part every level shares

    def answer_at(self, remaining: int) -> str:
        """Return the answer text to record at ``remaining`` ('' when the plan has none)."""
        i = remaining - self.lo
        return self.answers[i] + self.answer_tail if 0 <= i < len(self.answers) else ""

    def covers(self, remaining: int) -> bool:
        """Say whether the plan holds an entry for ``remaining``."""
        return self.lo <= remaining < self.lo + len(self.wants)

    def wants_at(self, remaining: int) -> bool:
        """Return the planned answer at ``remaining`` (caller checks :meth:`covers`)."""
        return self.wants[remaining - self.lo]

    def encode(self) -> str:
        """'0'/'1' string for the Lua script."""
        return "".join("1" if w else "0" for w in self.wants)


@dataclass(frozen=True)
class Grant:
    """The store's answer to one ``try_consume``.

    ``before`` is the remaining budget the decision was taken at, ``remaining`` what is left
    after it. ``wanted`` says the plan (or a plain call) asked to charge; ``granted`` that
    ``cost`` was charged. ``replayed`` marks the recorded answer of an earlier request with
    the same id: nothing was charged this time, and ``answer`` is the answer text recorded
    then (empty when none was given).
    """

    granted: bool
    before: int
    remaining: int
    wanted: bool
    replayed: bool = False
    answer: str = ""


@dataclass(frozen=True)
class Record:
    """An answer given without the store (degraded), to be recorded by :meth:`BudgetStore.settle`.

    ``charge`` is what the answer used (``cost`` for a fail-open intervene, else 0);
    ``deadline_ms`` the Redis-time deadline its own script had (0 when none was sent), which
    tells the request's own late record from a later retry's.
    """

    request_id: str
    digest: str
    charge: int
    granted: bool
    before: int
    remaining: int
    wanted: bool
    answer: str
    deadline_ms: float = 0.0


@dataclass(frozen=True)
class SessionInfo:
    """A read-only view of a session (``describe``)."""

    budget: int
    remaining: int
    horizon: int | None
    ttl_s: float
    expires_at: float  # unix seconds
    created_at: float  # unix seconds
    closed: bool = False
    success: bool | None = None
    steps: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class RequestIdReusedError(Exception):
    """The request id was recorded for a request with another body; nothing was written."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request id {request_id!r} was already used with a different body")
        self.request_id = request_id


class PlanMissError(Exception):
    """The plan does not cover the session's remaining budget; nothing was written."""

    def __init__(self, remaining: int) -> None:
        super().__init__(f"plan does not cover remaining budget {remaining}")
        self.remaining = remaining


@runtime_checkable
class BudgetStore(Protocol):
    """Per-session intervention budgets.

    Errors: SessionNotFoundError, SessionClosedError, BudgetStoreUnavailableError
    (service.errors), PlanMissError, RequestIdReusedError.
    """

    kind: str  # "redis" or "memory"

    async def create(
        self,
        key: SessionKey,
        budget: int,
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a session with ``budget`` units that expires ``ttl_s`` after its last use."""
        ...

    async def try_consume(
        self,
        key: SessionKey,
        request_id: str | None,
        cost: int,
        plan: Plan | None = None,
        digest: str = "-",
    ) -> Grant:
        """Atomically charge ``cost`` if the plan wants it at the current budget and it fits.

        A request id already recorded replays (``digest`` must match, else
        RequestIdReusedError).
        """
        ...

    async def settle(self, key: SessionKey, record: Record) -> bool:
        """Record a degraded answer under its request id now (settle.lua); False = no session."""
        ...

    def settle_later(self, key: SessionKey, record: Record) -> None:
        """Queue :meth:`settle` to run once the store answers again (never raises, never waits)."""
        ...

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for queued settlements; return how many are left."""
        ...

    async def remaining(self, key: SessionKey) -> int:
        """Peek at the remaining budget (never mutates, does not slide the TTL)."""
        ...

    async def describe(self, key: SessionKey) -> SessionInfo:
        """Peek at the whole session (never mutates)."""
        ...

    async def close(self, key: SessionKey, success: bool, steps: int) -> SessionInfo:
        """Record the episode's outcome; later decisions on the session are refused (409)."""
        ...

    async def ping(self) -> bool:
        """Say whether the store answers now."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
