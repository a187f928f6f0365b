"""The decision flow for a typed model (several intervention types, each with its own budget).

The same shape as :mod:`service.decisions` for one type: the state is scored at every budget
vector of a small box below the last remaining budgets this process saw (one forward pass);
the store's typed script picks the cell for the budgets it really holds and charges exactly
that cell's type, atomically (one round trip); a box that misses is rescored at the budgets
the store reported. Each cell carries its full answer text, recorded under the request id, so
a retry replays the same bytes. Without the store a typed answer fails *closed* (proceed,
degraded; docs/service.md "Typed models") whatever HELPSEEK_FAIL_MODE says; the answer is
queued and recorded under its request id once the store answers (``settle_typed``), refunding
a late charge of the request's own script, so a retry replays what the client received.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from service.budget.protocol import (
    RequestIdReusedError,
    SessionKey,
    SessionTypesError,
    TypedGrant,
    TypedPlan,
    TypedPlanMissError,
    TypedRecord,
)
from service.deps import CachedSession, ServiceState
from service.errors import BudgetStoreUnavailableError, FieldError
from service.schemas import DecisionRequest, DecisionResponse
from service.typed_scorer import TypedScored, TypedScorer, score_typed

if TYPE_CHECKING:
    from service.decisions import Outcome

__all__ = [
    "decide_typed",
    "decode_typed_answer",
    "encode_typed_answer",
    "typed_budgets",
]

_ANSWER_V = "t1"  # version tag of a recorded typed answer
_WINDOW = {1: 8, 2: 8, 3: 3}  # box width below the last known budget, per number of types


def typed_budgets(
    scorer: TypedScorer, budgets: Mapping[str, int] | None, budget: int | None, field: str
) -> tuple[int, ...]:
    """Return the budget of every type in the model's order, from ``budgets`` or ``budget``.

    A plain budget is accepted only when the model has one type. Raises FieldError naming the
    field (``field`` is ``budgets`` or ``remaining_budgets``; the plain one drops the ``s``).
    """
    names = scorer.type_names
    plain = field[:-1]
    if budgets is None:
        if budget is not None and len(names) == 1:
            return (budget,)
        if budget is not None:
            raise FieldError(
                ["body", plain],
                f"this model has {len(names)} intervention types ({', '.join(names)}): "
                f"give {field} with one entry per type",
            )
        raise FieldError(
            ["body", field], f"required: one budget per type ({', '.join(names)})", "missing"
        )
    if budget is not None:
        raise FieldError(["body", plain], f"give either {plain} or {field}, not both")
    unknown = sorted(set(budgets) - set(names))
    if unknown:
        raise FieldError(
            ["body", field, unknown[0]],
            f"unknown intervention type {unknown[0]!r}; this model has {', '.join(names)}",
        )
    missing = [n for n in names if n not in budgets]
    if missing:
        raise FieldError(["body", field], f"missing the budget of {', '.join(missing)}", "missing")
    return tuple(int(budgets[n]) for n in names)


def _answer_head(
    action: int, after: tuple[int, ...], reason: str, probability: float, clipped: bool
) -> str:
    vec = ",".join(str(v) for v in after)
    return f"{_ANSWER_V}\t{action}\t{vec}\t{reason}\t{float(probability)!r}\t{clipped:d}"


def encode_typed_answer(r: DecisionResponse, names: tuple[str, ...]) -> str:
    """Write a typed answer as stored (every field but the request id)."""
    from service.decisions import answer_tail

    action = names.index(r.type) + 1 if r.type is not None else 0
    after = tuple((r.remaining_budgets or {})[n] for n in names)
    head = _answer_head(action, after, r.reason, r.probability, r.budget_clipped)
    return head + answer_tail(r.degraded, r.novel, r.novelty_score, r.model_version)


def decode_typed_answer(text: str, request_id: str, names: tuple[str, ...]) -> DecisionResponse:
    """Rebuild the response recorded by :func:`encode_typed_answer` (a replay)."""
    v, action, vec, reason, p, clipped, degraded, novel, ns, mv = text.split("\t", 9)
    if v != _ANSWER_V:
        raise ValueError(f"unknown recorded typed answer format {v!r}")
    after = [int(x) for x in vec.split(",")]
    a = int(action)
    return DecisionResponse(
        intervene=a > 0,
        probability=float(p),
        remaining_budget=sum(after),
        reason=reason,  # type: ignore[arg-type]
        model_version=mv,
        degraded=degraded == "1",
        novel=novel == "1",
        novelty_score=float(ns),
        request_id=request_id,
        budget_clipped=clipped == "1",
        type=names[a - 1] if a else None,
        remaining_budgets=dict(zip(names, after, strict=True)),
    )


def _box(hi: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray]:
    w = _WINDOW.get(len(hi), 2)
    lo = tuple(max(h - w, 0) for h in hi)
    dims = tuple(h - lo_i + 1 for h, lo_i in zip(hi, lo, strict=True))
    cells = np.array(
        list(itertools.product(*(range(a, a + n) for a, n in zip(lo, dims, strict=True))))
    )
    return lo, dims, cells.reshape(-1, len(hi))


def _cell(scorer: TypedScorer, c: np.ndarray, probs: np.ndarray, clipped: bool) -> tuple[int, str]:
    """Return (action, answer head) at budgets ``c``: the helper's arg-max action there."""
    a = int(np.argmax(probs))
    after = tuple(int(v) - (scorer.costs[a - 1] if i == a - 1 else 0) for i, v in enumerate(c))
    affordable = any(int(v) >= k for v, k in zip(c, scorer.costs, strict=True))
    reason = "helper" if affordable else "budget_exhausted"
    return a, _answer_head(a, after, reason, 1.0 - float(probs[0]), clipped)


def _plan(
    scorer: TypedScorer, scored: TypedScored, lo: tuple[int, ...], dims: tuple[int, ...]
) -> TypedPlan:
    from service.decisions import answer_tail

    actions, heads = [], []
    for c, p, clip in zip(
        scored.budgets, scored.probabilities, scored.budget_clipped.tolist(), strict=True
    ):
        a, head = _cell(scorer, c, p, bool(clip))
        actions.append(a)
        heads.append(head)
    tail = answer_tail(False, scored.novel, scored.novelty_score, scorer.model_version)
    return TypedPlan(scorer.type_names, scorer.costs, lo, dims, tuple(actions), tuple(heads), tail)


async def decide_typed(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    scorer: TypedScorer,
    feats: np.ndarray,
    digest: str,
) -> Outcome:
    """Answer one decision request for a typed model (module docstring)."""
    names = scorer.type_names
    if body.session_id is None:
        c = typed_budgets(
            scorer, body.remaining_budgets, body.remaining_budget, "remaining_budgets"
        )
        left = (
            body.steps_left if body.steps_left is not None else max(scorer.horizon - body.step, 0)
        )
        scored = await score_typed(scorer, feats, np.array([c]), left)
        _, head = _cell(
            scorer, scored.budgets[0], scored.probabilities[0], bool(scored.budget_clipped[0])
        )
        text = head + _tail(scored, scorer, degraded=False)
        return _typed_outcome(
            body, tenant, rid, scorer, text, c, int(scored.actions[0]), left, False
        )
    if body.remaining_budgets is not None:
        raise FieldError(["body", "remaining_budgets"], "only in stateless mode (no session_id)")
    if body.remaining_budget is not None and len(names) > 1:
        raise FieldError(
            ["body", "remaining_budget"],
            f"this model has {len(names)} intervention types: the session holds their budgets",
        )
    key = SessionKey(tenant, body.session_id)
    cached = svc.sessions.get(key)
    try:
        if cached is None:
            info = await svc.store.describe(key)
            cached = CachedSession(
                info.budget, info.horizon, info.remaining, info.types, info.remainings
            )
            svc.remember(key, cached)
        if cached.types != names:
            raise SessionTypesError(cached.types, names)
        horizon = cached.horizon or scorer.horizon
        left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
        hi = cached.remainings
        grant: TypedGrant | None = None
        for _ in range(4):
            lo, dims, cells = _box(hi)
            scored = await score_typed(scorer, feats, cells, left)
            try:
                plan = _plan(scorer, scored, lo, dims)
                grant = await svc.store.try_consume_typed(key, rid, plan, digest)
                break
            except TypedPlanMissError as miss:
                hi = miss.remaining
        if grant is None:
            raise BudgetStoreUnavailableError("budget kept changing under the decision")
    except SessionTypesError as exc:
        raise FieldError(["body", "session_id"], str(exc), "session_types") from exc
    except RequestIdReusedError as exc:
        raise FieldError(["body", "request_id"], str(exc), "request_id_reused") from exc
    except BudgetStoreUnavailableError:
        out = await _degraded(svc, body, tenant, rid, scorer, feats, cached)
        before = tuple(out.before_by_type.values()) if out.before_by_type else ()
        text = encode_typed_answer(out.response, names)
        svc.store.settle_later(key, TypedRecord(rid, digest, before, text))
        return out
    cached.remainings = grant.remaining
    cached.remaining = sum(grant.remaining)
    if grant.replayed:
        response = decode_typed_answer(grant.answer, rid, names)
        return _typed_outcome(
            body, tenant, rid, scorer, grant.answer, grant.before, 0, left, True, response
        )
    text = plan.answer_at(grant.before)  # what the store recorded under the request id
    response = decode_typed_answer(text, rid, names)
    if grant.action != grant.wanted:  # never with the helper's plans (only affordable types)
        response = response.model_copy(
            update={
                "intervene": False,
                "type": None,
                "remaining_budget": sum(grant.remaining),
                "remaining_budgets": dict(zip(names, grant.remaining, strict=True)),
            }
        )
    return _typed_outcome(
        body, tenant, rid, scorer, text, grant.before, grant.wanted, left, False, response
    )


def _tail(scored: TypedScored, scorer: TypedScorer, degraded: bool) -> str:
    from service.decisions import answer_tail

    return answer_tail(degraded, scored.novel, scored.novelty_score, scorer.model_version)


async def _degraded(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    scorer: TypedScorer,
    feats: np.ndarray,
    cached: CachedSession | None,
) -> Outcome:
    """Store unreachable: proceed (fail closed), scored at the last budgets this process knew."""
    c = cached.remainings if cached is not None and cached.remainings else (0,) * len(scorer.types)
    horizon = (cached.horizon if cached else None) or scorer.horizon
    left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
    scored = await score_typed(scorer, feats, np.array([c]), left)
    p = 1.0 - float(scored.probabilities[0][0])
    text = _answer_head(0, c, "fail_closed", p, bool(scored.budget_clipped[0]))
    text += _tail(scored, scorer, degraded=True)
    return _typed_outcome(body, tenant, rid, scorer, text, c, int(scored.actions[0]), left, False)


def _typed_outcome(
    body: DecisionRequest,
    tenant: str,
    rid: str,
    scorer: TypedScorer,
    text: str,
    before: tuple[int, ...],
    wanted: int,
    left: int,
    replayed: bool,
    response: DecisionResponse | None = None,
) -> Outcome:
    from service.decisions import Outcome

    r = response or decode_typed_answer(text, rid, scorer.type_names)
    action = scorer.type_names.index(r.type) + 1 if r.type is not None else 0
    charged = scorer.costs[action - 1] if action and not r.degraded else 0
    return Outcome(
        response=r,
        asked=wanted > 0,
        charged=0 if replayed else charged,
        before=sum(before),
        steps_left=left,
        replayed=replayed,
        tenant=tenant,
        features=body.state.features,
        text=body.state.text,
        type_index=action,
        type_name=r.type,
        before_by_type=dict(zip(scorer.type_names, before, strict=True)),
    )
