"""Per-session intervention budgets: the protocol and its Redis and in-process stores."""

from service.budget.memory import MemoryBudgetStore
from service.budget.protocol import (
    BudgetStore,
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
)
from service.budget.redis_store import RedisBudgetStore, make_client

__all__ = [
    "BudgetStore",
    "Grant",
    "MemoryBudgetStore",
    "Plan",
    "PlanMissError",
    "Record",
    "RedisBudgetStore",
    "RequestIdReusedError",
    "SessionInfo",
    "SessionKey",
    "SessionTypesError",
    "TypedGrant",
    "TypedPlan",
    "TypedPlanMissError",
    "make_client",
]
