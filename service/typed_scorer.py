"""The ``typed`` scorer: a model with several intervention types (issue 14).

Wraps core's :class:`helpseek_core.typed_helper.TypedHelper`. One call scores a state at every
remaining budget vector of a box (one batched forward pass), and the budget store picks the
cell for the budgets the session really holds, atomically (``try_consume_typed``). The action
at a cell is the helper's arg-max over the actions those budgets can pay for (ties to the
lower index), exactly :meth:`TypedHelper.decide` (a test pins the two equal).

The scorer satisfies :class:`service.model_holder.Scorer` so the holder, reload and
``GET /v1/model`` treat it like any other; ``cmax``/``cost`` are the first type's (as the
manifest's top-level fields), and its one-budget ``score`` refuses: typed requests go through
:meth:`TypedScorer.score_typed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from helpseek_core.artifact import Artifact
from helpseek_core.errors import InputError
from helpseek_core.helper import Scored
from helpseek_core.typed_helper import InterventionType, TypedHelper

__all__ = ["TypedScored", "TypedScorer", "score_typed", "tighten_typed_schema"]

_INLINE_MAX_PARAMS = 200_000  # as service.model_holder: above this a forward pass is threaded


@dataclass(frozen=True)
class TypedScored:
    """One state scored at the budget vectors ``budgets`` (n, m)."""

    budgets: np.ndarray  # (n, m) int   remaining budget per type at each cell
    probabilities: np.ndarray  # (n, 1 + m)   P(proceed), P(type 1), ..; unaffordable = 0
    actions: np.ndarray  # (n,) int   0 = proceed, i = type i (arg-max over affordable)
    budget_clipped: np.ndarray  # (n,) bool   some type's budget above its cmax
    novel: bool
    novelty_score: float


class TypedScorer:
    """Typed artifacts: the multi-class helper MLP, its feature statistics and its types."""

    kind = "typed"

    def __init__(self, artifact: Artifact) -> None:
        self.helper = TypedHelper.from_artifact(artifact)
        self.types: tuple[InterventionType, ...] = self.helper.types
        self.type_names = tuple(t.name for t in self.types)
        self.costs = tuple(int(t.cost) for t in self.types)
        self.model_version = artifact.artifact_id
        self.feature_dim = artifact.feature_dim
        self.horizon = self.helper.horizon
        self.cmax = int(self.types[0].cmax)
        self.cost = int(self.types[0].cost)
        self.threshold = 0.5  # unused: the action is an arg-max, not a threshold
        self.manifest: Mapping[str, Any] = artifact.manifest
        mlp = self.helper.mlp
        n_params = sum(w.size + b.size for w, b in zip(mlp.weights, mlp.biases, strict=True))
        self.inline = n_params <= _INLINE_MAX_PARAMS

    def score(
        self, features: np.ndarray | None, text: str | None, budgets: np.ndarray, steps_left: int
    ) -> Scored:
        """Refuse: a typed model answers budget vectors (:meth:`score_typed`)."""
        raise InputError("this model has intervention types: score it with score_typed")

    def score_typed(
        self, features: np.ndarray, budgets: np.ndarray, steps_left: int
    ) -> TypedScored:
        """Score one state (F,) at each budget vector of ``budgets`` (n, m), one forward pass."""
        c = np.asarray(budgets, np.int64).reshape(-1, len(self.types))
        f = np.asarray(features, np.float64).reshape(1, -1)
        p = self.helper.probabilities(
            np.repeat(f, c.shape[0], axis=0), c, np.full(c.shape[0], steps_left)
        )
        cmax = np.array([t.cmax for t in self.types])
        stats = self.helper.stats
        return TypedScored(
            budgets=c,
            probabilities=p,
            actions=np.argmax(p, axis=1),
            budget_clipped=np.asarray((c > cmax[None, :]).any(axis=1)),
            novel=bool(stats.is_novel(f)[0]),
            novelty_score=float(stats.score(f)[0]),
        )


async def score_typed(
    scorer: TypedScorer, features: np.ndarray, budgets: np.ndarray, steps_left: int
) -> TypedScored:
    """Run :meth:`TypedScorer.score_typed` inline or in the thread pool, as the scorer asks."""
    if scorer.inline:
        return scorer.score_typed(features, budgets, steps_left)
    return await run_in_threadpool(scorer.score_typed, features, budgets, steps_left)


def tighten_typed_schema(components: dict[str, Any], scorer: TypedScorer) -> None:
    """Say in the served OpenAPI what a typed model accepts (after the generic tightening).

    The state is ``feature_dim`` features; budgets are an object with exactly the model's type
    names. A new session gives ``budgets`` (or, one type only, ``budget``), never both; a
    decision names a ``session_id`` or, stateless, gives ``remaining_budgets`` (one type:
    or ``remaining_budget``), never budgets with a session.
    """
    names = list(scorer.type_names)
    request = components["DecisionRequest"]
    props = request.get("properties", {})
    integer = next(
        (a for a in props.get("remaining_budget", {}).get("anyOf", []) if a.get("type") != "null"),
        {"type": "integer", "minimum": 0},
    )
    budgets = {
        "type": "object",
        "additionalProperties": False,
        "required": names,
        "properties": dict.fromkeys(names, integer),
    }
    features = {
        "type": "array",
        "items": {"type": "number"},
        "minItems": scorer.feature_dim,
        "maxItems": scorer.feature_dim,
    }
    old = components["State"]
    components["State"] = {
        "type": "object",
        "additionalProperties": False,
        "title": old.get("title", "State"),
        "description": old.get("description", ""),
        "required": ["features"],
        "properties": {"features": features},
    }
    props["remaining_budgets"] = {
        **budgets,
        "description": props.get("remaining_budgets", {}).get("description", ""),
    }
    one = len(names) == 1
    request["anyOf"] = [
        {"required": ["session_id"], "properties": {"session_id": {"type": "string"}}},
        {
            "required": ["remaining_budgets"],
            "properties": {"remaining_budgets": {"type": "object"}},
        },
        *(
            [
                {
                    "required": ["remaining_budget"],
                    "properties": {"remaining_budget": {"type": "integer"}},
                }
            ]
            if one
            else []
        ),
    ]
    refused = [
        {"required": ["remaining_budget", "remaining_budgets"]},
        {"required": ["session_id", "remaining_budgets"]},
        *([] if one else [{"required": ["remaining_budget"]}]),
    ]
    request["not"] = {"anyOf": refused}
    request.pop("oneOf", None)
    mean = [round(float(v), 3) for v in scorer.helper.stats.mean]
    state = {"features": mean}
    request["examples"] = [
        {"session_id": "3f2a9c", "request_id": "ep7-step12", "step": 12, "state": state},
        {"step": 3, "state": state, "remaining_budgets": dict.fromkeys(names, 1)},
    ]
    create = components.get("SessionCreate", {})
    cprops = create.get("properties", {})
    cprops["budgets"] = {**budgets, "description": cprops.get("budgets", {}).get("description", "")}
    create.pop("required", None)
    create.pop("not", None)
    if one:
        create["anyOf"] = [{"required": ["budget"]}, {"required": ["budgets"]}]
        create["not"] = {"required": ["budget", "budgets"]}
    else:
        create["required"] = ["budgets"]
        create["not"] = {"required": ["budget"]}
        cprops.pop("budget", None)
    create["examples"] = [{"budgets": dict.fromkeys(names, 1), "ttl_s": 3600}]
