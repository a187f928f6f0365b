"""Per-session intervention budgets: the protocol and its Redis and in-process stores."""

from service.budget.memory import MemoryBudgetStore
from service.budget.protocol import BudgetStore, Grant, Plan, PlanMissError, SessionInfo, SessionKey
from service.budget.redis_store import RedisBudgetStore, make_client

__all__ = [
    "BudgetStore",
    "Grant",
    "MemoryBudgetStore",
    "Plan",
    "PlanMissError",
    "RedisBudgetStore",
    "SessionInfo",
    "SessionKey",
    "make_client",
]
