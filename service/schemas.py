"""Request and response bodies of the HTTP API (pydantic lives only at this edge).

Requests forbid unknown fields. Numbers are strict: budgets and steps are non-negative
integers (an integral JSON number such as ``3.0`` counts as one, as JSON Schema says; ``true``
and ``"3"`` do not), features are finite JSON numbers (``true``, ``"0.1"``, ``NaN``,
``Infinity`` and ``1e309`` are refused with a 422 naming the field).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "DecisionRequest",
    "DecisionResponse",
    "Explore",
    "HealthResponse",
    "ModelResponse",
    "OutcomeRequest",
    "OutcomeResponse",
    "ReadyResponse",
    "ReloadResponse",
    "SessionCreate",
    "SessionCreated",
    "SessionStatus",
    "State",
    "TypeInfo",
    "MAX_BUDGET",
]

MAX_BUDGET = 10_000
MAX_STEPS = 10_000_000


def _integral(value: object) -> object:
    """``3.0`` -> ``3`` (JSON Schema's ``integer`` admits a zero fraction); else unchanged."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


_Integral = BeforeValidator(_integral)
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
# Field before the validator, or the JSON Schema shows pydantic's "ge"/"le" instead of
# "minimum"/"maximum"
Budget = Annotated[int, Field(strict=True, ge=0, le=MAX_BUDGET), _Integral]
Steps = Annotated[int, Field(strict=True, ge=0, le=MAX_STEPS), _Integral]
TtlS = Annotated[int, Field(strict=True, ge=1, le=30 * 86400), _Integral]
Horizon = Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS), _Integral]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
MetaValue = str | int | Finite | bool | None
Reason = Literal["helper", "explore", "budget_exhausted", "fail_open", "fail_closed"]
TypeName = Annotated[str, Field(min_length=1, max_length=64)]
Budgets = Annotated[dict[TypeName, Budget], Field(min_length=1, max_length=9)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Explore(_Request):
    """An exploration session: intervene at random with probability p (Phase I data)."""

    p: Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)] = Field(
        description="Probability of answering intervene at each decision, in [0, 1]."
    )


Int64 = Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1), _Integral]
Action = Annotated[int, Field(strict=True, ge=0, le=1), _Integral]
_RESERVED_META = "helpseek."


class SessionCreate(_Request):
    """Start an episode with a budget of interventions."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"budget": 3, "ttl_s": 3600, "horizon": 25}]},
    )

    budget: Budget | None = Field(
        None,
        description="Interventions (budget units) this episode may use; required unless the "
        "model has several intervention types (then give budgets).",
    )
    budgets: Budgets | None = Field(
        None,
        description="Typed models: budget units per intervention type, one entry for every "
        'type GET /v1/model lists (e.g. {"hint": 3, "takeover": 1}).',
    )
    ttl_s: TtlS | None = Field(
        None, description="Seconds of inactivity after which the session expires (sliding)."
    )
    horizon: Horizon | None = Field(
        None, description="Episode step limit H; steps_left defaults to horizon - step."
    )
    metadata: dict[Annotated[str, Field(max_length=64)], MetaValue] | None = Field(
        None, max_length=32, description="Free-form labels stored with the session."
    )
    explore: bool | Explore | None = Field(
        None,
        description='Exploration session: {"p": 0.3} intervenes at random with probability '
        "0.3 at every decision (no helper involved; the log records p as behavior_p); true "
        "takes the next p of the server's schedule (HELPSEEK_EXPLORE_SCHEDULE).",
    )

    @model_validator(mode="after")
    def _no_reserved_metadata(self) -> SessionCreate:
        for k in self.metadata or {}:
            if k.startswith(_RESERVED_META):
                raise ValueError(f"metadata key {k!r}: the prefix {_RESERVED_META!r} is reserved")
        return self


class SessionCreated(BaseModel):
    """A new session."""

    session_id: str
    budget: int
    expires_at: float = Field(description="Unix time at which the session expires if unused.")
    budgets: dict[str, int] | None = Field(
        default=None, description="Typed models: the budget of every type (budget is their sum)."
    )
    explore_p: float | None = Field(
        default=None, description="Explore sessions: the probability of intervening."
    )


class State(_Request):
    """The agent's state: a feature vector (features artifacts) or a text rendering (text)."""

    features: list[Finite] | None = Field(None, max_length=4096)
    text: str | None = Field(None, max_length=32_768)
    key: Int64 | None = Field(
        None,
        description="The agent's own state id (signed 64-bit); the decision log records it as "
        "state_key (else an exact hash of features or text).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> State:
        if (self.features is None) == (self.text is None):
            raise ValueError("give exactly one of state.features or state.text")
        return self


class DecisionRequest(_Request):
    """Ask: should the agent request help now."""

    # examples: built per served model by service.app (valid for its feature length)
    model_config = ConfigDict(extra="forbid")

    session_id: Id | None = Field(None, description="Server-side budget; omit for stateless mode.")
    request_id: Id | None = Field(
        None, description="Idempotency key: a retry replays the first answer, never re-charges."
    )
    step: Steps = Field(description="Env step t of this decision point.")
    state: State
    remaining_budget: Budget | None = Field(
        None, description="Stateless mode: the caller's remaining budget (required there)."
    )
    remaining_budgets: Budgets | None = Field(
        None,
        description="Stateless mode with a typed model: the remaining budget of every type.",
    )
    steps_left: Steps | None = Field(None, description="Default: horizon - step.")
    action_taken: Action | None = Field(
        None,
        description="What the agent actually did at this session's previous decision (1 asked "
        "for help, 0 did not), when it did not follow that answer; the log records it.",
    )


class DecisionResponse(BaseModel):
    """The answer; an exhausted budget is a normal answer (reason budget_exhausted)."""

    intervene: bool
    probability: float
    remaining_budget: int
    reason: Reason
    model_version: str
    degraded: bool = Field(description="Answered without the budget store (see reason).")
    novel: bool = Field(description="The state looks unlike the model's training data.")
    novelty_score: float
    request_id: str
    budget_clipped: bool = Field(
        default=False,
        description="The remaining budget is above the range the helper was trained on "
        "(GET /v1/model budget_range): it was decided as at the top of that range (cmax).",
    )
    type: str | None = Field(
        default=None,
        description="Typed models: the intervention type to request (null: proceed, or a "
        "one-type model).",
    )
    remaining_budgets: dict[str, int] | None = Field(
        default=None,
        description="Typed models: the remaining budget of every type after this answer "
        "(remaining_budget is their sum).",
    )


class OutcomeRequest(_Request):
    """How the episode ended."""

    success: bool = Field(strict=True)
    steps: Steps
    action_taken: Action | None = Field(
        None,
        description="What the agent actually did at the session's last decision (1 asked for "
        "help, 0 did not), when it did not follow that answer; the log records it.",
    )


class OutcomeResponse(BaseModel):
    """The closed session."""

    session_id: str
    success: bool
    steps: int
    budget: int
    remaining_budget: int
    budget_used: int


class SessionStatus(BaseModel):
    """A session's current state."""

    session_id: str
    budget: int
    remaining_budget: int
    horizon: int | None
    expires_at: float
    created_at: float
    closed: bool
    success: bool | None
    steps: int | None
    metadata: dict[str, MetaValue]
    budgets: dict[str, int] | None = Field(default=None, description="Typed sessions.")
    remaining_budgets: dict[str, int] | None = Field(default=None, description="Typed sessions.")


class TypeInfo(BaseModel):
    """One intervention type of a typed model."""

    name: str
    k: int = Field(description="Steps one intervention of this type covers.")
    cost: int = Field(description="Budget units one intervention of this type costs.")
    cmax: int = Field(description="Largest budget of this type the helper was trained on.")


class ModelResponse(BaseModel):
    """The model this process serves."""

    model_version: str
    kind: str
    feature_dim: int
    feature_names: list[str]
    cmax: int
    budget_range: tuple[int, int] = Field(
        description="Remaining budgets [low, high] the helper was trained on; a larger budget "
        "is decided as at high (the answer then says budget_clipped)."
    )
    horizon: int
    k: int
    cost: int
    threshold: float
    target_intervention_rate: float | None
    loaded_at: float
    types: list[TypeInfo] | None = Field(
        default=None, description="Typed models: the intervention types, in the artifact's order."
    )


class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ReadyResponse(BaseModel):
    """Readiness: the model is loaded; the budget store's state is reported, not required."""

    status: Literal["ready"]
    model_version: str
    budget_store: str
    budget_store_ok: bool
    fail_mode: str
    explore_only: bool = Field(
        default=False,
        description="No artifact is loaded: only explore sessions are answered (others 503).",
    )


class ReloadResponse(BaseModel):
    """A successful hot reload."""

    model_version: str
    previous_version: str
    reloaded: bool
    workers_signalled: int = Field(
        default=0, description="Other worker processes told to reload in place (SIGHUP each)."
    )
