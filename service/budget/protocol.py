"""The budget-store contract (docs/design.md, rule 8): one Protocol, two implementations, one test suite.

A session's budget lives under a key hash-tagged ``{tenant:session}``. ``try_consume`` is the
only mutation on the hot path and is atomic: it reads the remaining budget, decides whether
to charge (``plan``), charges at most ``cost``, records the answer text under the request id
(with a digest of the request body) so a retry replays it without a second charge, and slides
the TTL. A refusal writes no budget. ``settle`` records an answer given while the store was
unreachable (a degraded answer), so the budget and later replays agree with what the client
received. Request-id records are kept in two generations of at most ``cap`` each per session.

A *typed* session (a model with several intervention types, issue 14) holds one budget per
type. ``try_consume_typed`` is its hot path: the plan gives the action (proceed or a type) at
each remaining budget *vector* of a box, and the store charges exactly the chosen type's cost,
never below zero for any type. It runs its own script (``check_and_consume_typed.lua``), so
the one-type hot path stays as it is; a one-type call on a typed session (or a typed call on
another session) raises SessionTypesError and writes nothing.
"""

from __future__ import annotations

import math
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
    "SessionTypesError",
    "TypedGrant",
    "TypedPlan",
    "TypedPlanMissError",
    "TypedRecord",
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
class TypedPlan:
    """The action at each remaining budget vector of the box ``lo .. lo + dims - 1``.

    ``actions`` is row-major over the box (the last type varies fastest): 0 = proceed,
    i = request ``types[i - 1]``. ``answers`` holds the answer text per cell (without
    ``answer_tail``), as :class:`Plan` does for one type.
    """

    types: tuple[str, ...]
    costs: tuple[int, ...]
    lo: tuple[int, ...]
    dims: tuple[int, ...]
    actions: tuple[int, ...]
    answers: tuple[str, ...] = ()
    answer_tail: str = ""

    def __post_init__(self) -> None:
        m = len(self.types)
        if not 1 <= m <= 9 or not (len(self.costs) == len(self.lo) == len(self.dims) == m):
            raise ValueError("TypedPlan: 1..9 types, one cost, lo and dim per type")
        if len(self.actions) != math.prod(self.dims) or any(not 0 <= a <= m for a in self.actions):
            raise ValueError("TypedPlan: one action in 0..m per cell of the box")

    def index(self, remaining: tuple[int, ...]) -> int | None:
        """Cell of ``remaining`` in the box, or None when the box does not hold it."""
        i = 0
        for c, lo, n in zip(remaining, self.lo, self.dims, strict=True):
            if not lo <= c < lo + n:
                return None
            i = i * n + (c - lo)
        return i

    def answer_at(self, remaining: tuple[int, ...]) -> str:
        """Return the answer text to record at ``remaining`` ('' when the plan has none)."""
        i = self.index(remaining)
        return self.answers[i] + self.answer_tail if i is not None and self.answers else ""

    def encode(self) -> str:
        """One digit per cell for the Lua script."""
        return "".join(str(a) for a in self.actions)


@dataclass(frozen=True)
class TypedGrant:
    """The store's answer to one ``try_consume_typed`` (the vector form of :class:`Grant`).

    ``wanted`` is the plan's action at ``before`` (0 = proceed); ``action`` the type charged
    (0 = none: proceed, or the type did not fit). ``before``/``remaining`` are per type.
    """

    action: int
    wanted: int
    before: tuple[int, ...]
    remaining: tuple[int, ...]
    replayed: bool = False
    answer: str = ""

    @property
    def granted(self) -> bool:
        """Whether a type was charged."""
        return self.action > 0


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
class TypedRecord:
    """A typed answer given without the store (always fail closed: it charged nothing).

    :meth:`BudgetStore.settle_typed` records it under its request id, refunding a late charge
    of the request's own script (one that started before ``deadline_ms``), as for one type.
    """

    request_id: str
    digest: str
    before: tuple[int, ...]
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
    # typed sessions: type names, budgets and remaining per type (budget/remaining are sums)
    types: tuple[str, ...] = ()
    budgets: tuple[int, ...] = ()
    remainings: tuple[int, ...] = ()


class RequestIdReusedError(Exception):
    """The request id was recorded for a request with another body; nothing was written."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request id {request_id!r} was already used with a different body")
        self.request_id = request_id


class SessionTypesError(Exception):
    """The session's intervention types are not the ones the call names; nothing was written."""

    def __init__(self, session_types: tuple[str, ...], asked: tuple[str, ...]) -> None:
        have = ", ".join(session_types) or "one untyped budget"
        want = ", ".join(asked) or "one untyped budget"
        super().__init__(f"the session holds budgets for {have}; the served model has {want}")
        self.session_types, self.asked = session_types, asked


class TypedPlanMissError(Exception):
    """The typed plan's box does not hold the session's remaining budgets; nothing was written."""

    def __init__(self, remaining: tuple[int, ...]) -> None:
        super().__init__(f"plan does not cover remaining budgets {remaining}")
        self.remaining = remaining


class PlanMissError(Exception):
    """The plan does not cover the session's remaining budget; nothing was written."""

    def __init__(self, remaining: int) -> None:
        super().__init__(f"plan does not cover remaining budget {remaining}")
        self.remaining = remaining


@runtime_checkable
class BudgetStore(Protocol):
    """Per-session intervention budgets.

    Errors: SessionNotFoundError, SessionClosedError, BudgetStoreUnavailableError
    (service.errors), PlanMissError, RequestIdReusedError; typed: TypedPlanMissError,
    SessionTypesError.
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

    async def create_typed(
        self,
        key: SessionKey,
        types: tuple[str, ...],
        budgets: tuple[int, ...],
        ttl_s: float,
        horizon: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SessionInfo:
        """Start a typed session with ``budgets[i]`` units of ``types[i]``."""
        ...

    async def try_consume_typed(
        self,
        key: SessionKey,
        request_id: str | None,
        plan: TypedPlan,
        digest: str = "-",
    ) -> TypedGrant:
        """Atomically charge the plan's type at the held budgets if it fits (idempotent per id).

        Raises TypedPlanMissError, SessionTypesError, RequestIdReusedError as well.
        """
        ...

    async def settle(self, key: SessionKey, record: Record) -> bool:
        """Record a degraded answer under its request id now (settle.lua); False = no session."""
        ...

    async def settle_typed(self, key: SessionKey, record: TypedRecord) -> bool:
        """Record a degraded typed answer (settle_typed.lua); False = no session."""
        ...

    def settle_later(self, key: SessionKey, record: Record | TypedRecord) -> None:
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
