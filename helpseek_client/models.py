"""Typed, immutable results of the HelpSeek HTTP API (docs/service.md; docs/design.md §6).

Each record is built from the service's JSON by its ``from_json`` constructor, which checks the
fields the contract promises and keeps the whole body in ``raw`` (not compared, not printed) so
fields added by a newer service are not lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from helpseek_client.errors import UnexpectedResponse

__all__ = ["Decision", "InterventionTypeInfo", "ModelInfo", "Session", "SessionStatus"]


def _need(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in body:
        raise UnexpectedResponse(f"{where}: the answer lacks {key!r}: {dict(body)!r:.300}")
    value = body[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UnexpectedResponse(f"{where}: {key!r} should be {kind}, got {value!r:.100}")
    return value


def _opt(body: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if body.get(key) is None:
        return None
    return _need(body, key, kind, where)


def _budgets(body: Mapping[str, Any], key: str, where: str) -> dict[str, int] | None:
    """Read a ``{type name: budget}`` object (typed models); None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise UnexpectedResponse(
            f"{where}: {key!r} should map type names to integers: {value!r:.100}"
        )
    return dict(value)


def _time(value: Any, where: str) -> datetime | None:
    """ISO-8601 string or epoch seconds -> aware datetime (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise UnexpectedResponse(f"{where}: not an ISO-8601 time: {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise UnexpectedResponse(f"{where}: not a time: {value!r:.100}")


@dataclass(frozen=True)
class Session:
    """A started episode: its id, its budget and when the server forgets it."""

    session_id: str
    budget: int  # typed models: the sum of budgets
    expires_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    budgets: dict[str, int] | None = None  # typed models: the budget of every type
    explore_p: float | None = None  # exploration sessions: the probability of intervening

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> Session:
        """Parse the 201 answer of ``POST /v1/sessions``."""
        where = "POST /v1/sessions"
        return Session(
            session_id=_need(body, "session_id", str, where),
            budget=_need(body, "budget", int, where),
            expires_at=_time(body.get("expires_at"), where),
            raw=dict(body),
            budgets=_budgets(body, "budgets", where),
            explore_p=None if body.get("explore_p") is None else float(body["explore_p"]),
        )


@dataclass(frozen=True)
class Decision:
    """The answer to "should the agent ask for help now?"."""

    intervene: bool  # ask for the intervention now
    probability: float  # the helper's P(intervening is optimal)
    remaining_budget: int | None  # budget left after this answer (None if the server kept none)
    reason: str  # helper | explore | budget_exhausted | fail_open | fail_closed
    model_version: str  # artifact id that answered
    degraded: bool  # the budget store was unreachable; the fail mode decided
    novel: bool  # the state looks unlike the training data
    novelty_score: float | None  # RMS z-score of the features (None for text states)
    request_id: str  # idempotency key: a retry with it gets this same answer
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    type: str | None = None  # typed models: the intervention type to request (None: proceed)
    remaining_budgets: dict[str, int] | None = None  # typed models: left per type after this

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> Decision:
        """Parse the 200 answer of ``POST /v1/should_intervene``."""
        where = "POST /v1/should_intervene"
        return Decision(
            intervene=_need(body, "intervene", bool, where),
            probability=_need(body, "probability", float, where),
            remaining_budget=_opt(body, "remaining_budget", int, where),
            reason=_need(body, "reason", str, where),
            model_version=_need(body, "model_version", str, where),
            degraded=_need(body, "degraded", bool, where),
            novel=bool(body.get("novel", False)),
            novelty_score=_opt(body, "novelty_score", float, where),
            request_id=_need(body, "request_id", str, where),
            raw=dict(body),
            type=_opt(body, "type", str, where),
            remaining_budgets=_budgets(body, "remaining_budgets", where),
        )


@dataclass(frozen=True)
class SessionStatus:
    """What the server knows about a session (``GET /v1/sessions/{id}``, or an outcome answer)."""

    session_id: str
    budget: int | None
    remaining_budget: int | None
    closed: bool  # an outcome was reported
    success: bool | None  # the reported outcome, if any
    steps: int | None  # the reported episode length, if any
    horizon: int | None
    expires_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    budgets: dict[str, int] | None = None  # typed sessions: budget per type
    remaining_budgets: dict[str, int] | None = None  # typed sessions: left per type

    @property
    def interventions_used(self) -> int | None:
        """Budget units spent so far (budget - remaining), when both are known."""
        if self.budget is None or self.remaining_budget is None:
            return None
        return self.budget - self.remaining_budget

    @staticmethod
    def from_json(body: Mapping[str, Any], session_id: str = "") -> SessionStatus:
        """Parse a session body; tolerant of fields a newer service may add or omit."""
        where = "session"
        success = _opt(body, "success", bool, where)
        return SessionStatus(
            session_id=str(body.get("session_id", session_id)),
            budget=_opt(body, "budget", int, where),
            remaining_budget=_opt(body, "remaining_budget", int, where),
            closed=bool(body.get("closed", success is not None)),
            success=success,
            steps=_opt(body, "steps", int, where),
            horizon=_opt(body, "horizon", int, where),
            expires_at=_time(body.get("expires_at"), where),
            raw=dict(body),
            budgets=_budgets(body, "budgets", where),
            remaining_budgets=_budgets(body, "remaining_budgets", where),
        )


@dataclass(frozen=True)
class InterventionTypeInfo:
    """One intervention type of a typed model: its name, steps covered, cost, trained budget."""

    name: str
    k: int
    cost: int
    cmax: int


@dataclass(frozen=True)
class ModelInfo:
    """The artifact the service is serving (``GET /v1/model``)."""

    model_version: str
    kind: str | None  # "features" or "text"
    feature_dim: int | None  # length of the features= vector to send
    cmax: int | None  # largest budget the helper was trained for
    horizon: int | None
    k: int | None  # steps one intervention lasts
    cost: int | None  # budget units one intervention costs
    target_intervention_rate: float | None  # what the offline evaluation expects
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    types: tuple[InterventionTypeInfo, ...] | None = None  # typed models, in artifact order

    @staticmethod
    def from_json(body: Mapping[str, Any]) -> ModelInfo:
        """Parse ``GET /v1/model``."""
        where = "GET /v1/model"
        return ModelInfo(
            model_version=_need(body, "model_version", str, where),
            kind=_opt(body, "kind", str, where),
            feature_dim=_opt(body, "feature_dim", int, where),
            cmax=_opt(body, "cmax", int, where),
            horizon=_opt(body, "horizon", int, where),
            k=_opt(body, "k", int, where),
            cost=_opt(body, "cost", int, where),
            target_intervention_rate=_opt(body, "target_intervention_rate", float, where),
            raw=dict(body),
            types=_types(body, where),
        )


def _types(body: Mapping[str, Any], where: str) -> tuple[InterventionTypeInfo, ...] | None:
    raw = body.get("types")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise UnexpectedResponse(f"{where}: 'types' should be a list, got {raw!r:.100}")
    return tuple(
        InterventionTypeInfo(
            _need(t, "name", str, where),
            _need(t, "k", int, where),
            _need(t, "cost", int, where),
            _need(t, "cmax", int, where),
        )
        for t in raw
    )
