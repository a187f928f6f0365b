"""The decision flow behind /v1/should_intervene: score, consume atomically, degrade on outage.

With a session the server's budget is the truth: the state is scored at a small window of
remaining budgets around the last one this process saw (one batched forward pass), and the
store's Lua script picks the entry for the budget it really holds while charging — one round
trip, and the decision is consistent with the charge. If the window misses (other workers
spent more), the state is rescored at the budget the store reported and tried again.

The plan carries the full answer text for each budget in the window; the store records the
one it picks under the request id with a digest of the body, so a retry gets the very same
answer back (rebuilt from that text, byte for byte) and a reused id with another body a 422.
Without the store the answer degrades (docs/service.md, "Redis down") and is queued to be
recorded once the store answers.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.budget.protocol import (
    Grant,
    Plan,
    PlanMissError,
    Record,
    RequestIdReusedError,
    SessionKey,
    SessionTypesError,
)
from service.deps import CachedSession, ServiceState
from service.errors import BudgetStoreUnavailableError, FieldError, NoModelError
from service.explore import NO_MODEL_KIND, decide_explore, explore_p_of
from service.model_holder import Scored, Scorer
from service.schemas import DecisionRequest, DecisionResponse
from service.typed_decisions import decide_typed
from service.typed_scorer import TypedScorer

__all__ = [
    "Outcome",
    "answer_tail",
    "body_digest",
    "decide_request",
    "decode_answer",
    "encode_answer",
]

_WINDOW = 8  # budgets scored below the last known remaining
_ANSWER_V = "a1"  # version tag of the recorded answer text


@dataclass(frozen=True)
class Outcome:
    """A decision plus what the log and metrics need."""

    response: DecisionResponse
    asked: bool  # the helper wanted to intervene at the budget used
    charged: int  # budget units charged by this request
    before: int  # remaining budget the decision was taken at
    steps_left: int
    replayed: bool
    tenant: str
    features: list[float] | None
    text: str | None
    type_index: int = 0  # typed models: 1 + the index of the type requested (0 = none)
    type_name: str | None = None
    before_by_type: dict[str, int] | None = None  # typed models: remaining per type before
    explore_p: float | None = None  # explore sessions: P(intervene) of the behaviour policy


def _check_state(body: DecisionRequest, scorer: Scorer) -> np.ndarray | None:
    st = body.state
    if scorer.kind in ("features", "typed"):
        if st.features is None:
            raise FieldError(["body", "state", "text"], "this model takes state.features, not text")
        if len(st.features) != scorer.feature_dim:
            raise FieldError(
                ["body", "state", "features"],
                f"expected {scorer.feature_dim} features, got {len(st.features)}",
            )
        return np.asarray(st.features, np.float64)
    if st.text is None:
        raise FieldError(
            ["body", "state", "features"], f"this {scorer.kind} model takes state.text"
        )
    if not st.text.strip():
        raise FieldError(["body", "state", "text"], "must be a non-empty string")
    return None


async def _score(
    svc: ServiceState,
    feats: np.ndarray | None,
    body: DecisionRequest,
    lo: int,
    hi: int,
    steps_left: int,
) -> tuple[Scorer, Scored]:
    budgets = np.arange(lo, hi + 1, dtype=np.int64)
    return await svc.holder.score(feats, body.state.text, budgets, steps_left)


def body_digest(body: DecisionRequest, feats: np.ndarray | None) -> str:
    """Digest of what a request asks (not its id): a reused id must come with the same body."""
    h = hashlib.blake2b(
        f"{body.session_id}\x1f{body.step}\x1f{body.remaining_budget}\x1f{body.steps_left}"
        "\x1f".encode(),
        digest_size=12,
    )
    if feats is not None:
        h.update(feats.tobytes())
    else:
        h.update(b"\x1e" + (body.state.text or "").encode("utf-8"))
    return h.hexdigest()


def encode_answer(r: DecisionResponse) -> str:
    """Write an answer as stored: every response field but the request id (the record key).

    ``repr`` of a float parses back to the same float, so :func:`decode_answer` rebuilds a
    response that serialises to the same bytes.
    """
    head = _answer_head(r.intervene, r.remaining_budget, r.reason, r.probability, r.budget_clipped)
    return head + answer_tail(r.degraded, r.novel, r.novelty_score, r.model_version)


def answer_tail(degraded: bool, novel: bool, novelty_score: float, model_version: str) -> str:
    """Write the part of a recorded answer every budget level shares (one- and typed models)."""
    return f"\t{degraded:d}\t{novel:d}\t{float(novelty_score)!r}\t{model_version}"


def _answer_head(go: bool, after: int, reason: str, probability: float, clipped: bool) -> str:
    return f"{_ANSWER_V}\t{go:d}\t{after}\t{reason}\t{float(probability)!r}\t{clipped:d}"


def decode_answer(text: str, request_id: str) -> DecisionResponse:
    """Rebuild the response recorded by :func:`encode_answer` (a replay: nothing re-scored)."""
    v, go, after, reason, p, clipped, degraded, novel, ns, mv = text.split("\t", 9)
    if v != _ANSWER_V:
        raise ValueError(f"unknown recorded answer format {v!r}")
    return DecisionResponse(
        intervene=go == "1",
        probability=float(p),
        remaining_budget=int(after),
        reason=reason,  # type: ignore[arg-type]
        model_version=mv,
        degraded=degraded == "1",
        novel=novel == "1",
        novelty_score=float(ns),
        request_id=request_id,
        budget_clipped=clipped == "1",
    )


def _plan(scorer: Scorer, scored: Scored, lo: int) -> Plan:
    """Build the plan for budgets lo, lo + 1, ...: the wanted answer and its full text at each.

    Each head is what :func:`_answer_head` writes (a test pins the two equal); written out
    here because this runs for every budget in the window on every decision.
    """
    cost = scorer.cost
    wants = tuple(scored.intervene.tolist())
    heads = []
    reprs: dict[float, str] = {}  # budgets above cmax share one probability: repr it once
    for c, w, p, clip in zip(
        range(lo, lo + len(wants)),
        wants,
        scored.probability.tolist(),
        scored.budget_clipped.tolist(),
        strict=True,
    ):
        ps = reprs.get(p)
        if ps is None:
            ps = reprs[p] = repr(p)
        if c < cost:
            heads.append(f"{_ANSWER_V}\t0\t{c}\tbudget_exhausted\t{ps}\t{'1' if clip else '0'}")
        elif w:
            heads.append(f"{_ANSWER_V}\t1\t{c - cost}\thelper\t{ps}\t{'1' if clip else '0'}")
        else:
            heads.append(f"{_ANSWER_V}\t0\t{c}\thelper\t{ps}\t{'1' if clip else '0'}")
    tail = answer_tail(False, scored.novel, scored.novelty_score, scorer.model_version)
    return Plan(lo, wants, tuple(heads), tail)


async def decide_request(
    svc: ServiceState, body: DecisionRequest, tenant: str, request_id: str | None
) -> Outcome:
    """Answer one decision request (see the module docstring)."""
    scorer0 = svc.holder.scorer
    rid = request_id or uuid.uuid4().hex
    if body.session_id is not None or scorer0.kind == NO_MODEL_KIND:
        explored = await _explore(svc, body, tenant, rid, scorer0)
        if explored is not None:
            return explored
    feats = _check_state(body, scorer0)
    if isinstance(scorer0, TypedScorer):
        assert feats is not None  # noqa: S101 - _check_state: a typed model takes features
        return await decide_typed(svc, body, tenant, rid, scorer0, feats, body_digest(body, feats))
    if body.remaining_budgets is not None:
        raise FieldError(
            ["body", "remaining_budgets"],
            "this model has one intervention type: give remaining_budget",
        )

    if body.session_id is None:
        if body.remaining_budget is None:
            raise FieldError(["body", "remaining_budget"], "required when no session_id is given")
        c = body.remaining_budget
        left = (
            body.steps_left if body.steps_left is not None else max(scorer0.horizon - body.step, 0)
        )
        scorer, scored = await _score(svc, feats, body, c, c, left)
        i = scored.at(c)
        go = bool(scored.intervene[i])
        reason = "helper" if c >= scorer.cost else "budget_exhausted"
        return _outcome(
            body, tenant, rid, scorer, scored, before=c, go=go, reason=reason, left=left
        )

    key = SessionKey(tenant, body.session_id)
    digest = body_digest(body, feats)
    cached = svc.sessions.get(key)
    try:
        if cached is None:
            info = await svc.store.describe(key)
            cached = CachedSession(
                info.budget, info.horizon, info.remaining, info.types, info.remainings
            )
            svc.remember(key, cached)
        if cached.types:
            raise SessionTypesError(cached.types, ())
        horizon = cached.horizon or scorer0.horizon
        left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
        hi = cached.remaining
        grant: Grant | None = None
        for _ in range(4):
            lo = max(hi - _WINDOW, 0)
            scorer, scored = await _score(svc, feats, body, lo, hi, left)
            try:
                grant = await svc.store.try_consume(
                    key, rid, scorer.cost, _plan(scorer, scored, lo), digest
                )
                break
            except PlanMissError as miss:
                hi = miss.remaining
        if grant is None:
            raise BudgetStoreUnavailableError("budget kept changing under the decision")
    except BudgetStoreUnavailableError:
        return await _degraded(svc, body, tenant, rid, feats, cached, scorer0, key, digest)
    except RequestIdReusedError as exc:
        raise FieldError(["body", "request_id"], str(exc), "request_id_reused") from exc
    except SessionTypesError as exc:
        raise FieldError(["body", "session_id"], str(exc), "session_types") from exc
    cached.remaining = grant.remaining
    if grant.replayed:
        return await _replay(svc, body, tenant, rid, grant, feats, left)
    reason = "helper" if grant.before >= scorer.cost else "budget_exhausted"
    return _outcome(
        body,
        tenant,
        rid,
        scorer,
        scored,
        before=grant.before,
        after=grant.remaining,
        go=grant.granted and grant.wanted,
        reason=reason,
        left=left,
    )


async def _explore(
    svc: ServiceState, body: DecisionRequest, tenant: str, rid: str, scorer0: Scorer
) -> Outcome | None:
    """Answer an explore session (service.explore); None for a helper decision."""
    if body.session_id is None:
        raise NoModelError()  # explore-only service, stateless request
    key = SessionKey(tenant, body.session_id)
    cached = svc.sessions.get(key)
    if cached is None:
        try:
            info = await svc.store.describe(key)
        except BudgetStoreUnavailableError:
            if scorer0.kind == NO_MODEL_KIND:
                raise
            return None  # the helper path degrades as usual
        cached = CachedSession(
            info.budget,
            info.horizon,
            info.remaining,
            info.types,
            info.remainings,
            explore_p_of(info.metadata),
        )
        svc.remember(key, cached)
    if cached.explore_p is None:
        if scorer0.kind == NO_MODEL_KIND:
            raise NoModelError()
        return None
    return await decide_explore(svc, body, tenant, rid, key, cached)


async def _replay(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    grant: Grant,
    feats: np.ndarray | None,
    left: int,
) -> Outcome:
    """Return the recorded answer, rebuilt from its text (never re-scored, never counted or logged).

    A record without answer text (written before answers were recorded) is answered from its
    grant at the budget it was decided at, as before.
    """
    if grant.answer:
        response = decode_answer(grant.answer, rid)
    else:
        scorer, scored = await _score(svc, feats, body, grant.before, grant.before, left)
        reason = "helper" if grant.before >= scorer.cost else "budget_exhausted"
        response = _outcome(
            body,
            tenant,
            rid,
            scorer,
            scored,
            before=grant.before,
            after=grant.remaining,
            go=grant.granted and grant.wanted,
            reason=reason,
            left=left,
        ).response
    return Outcome(
        response=response,
        asked=False,
        charged=0,
        before=grant.before,
        steps_left=left,
        replayed=True,
        tenant=tenant,
        features=body.state.features,
        text=body.state.text,
    )


async def _degraded(
    svc: ServiceState,
    body: DecisionRequest,
    tenant: str,
    rid: str,
    feats: np.ndarray | None,
    cached: CachedSession | None,
    scorer0: Scorer,
    key: SessionKey,
    digest: str,
) -> Outcome:
    """Budget store down: fail closed, or open within this process's ledger of the budget.

    Fail-open grants at most what this process last knew was left (``cached.remaining``, also
    capped by the caller's ``remaining_budget``), taking each grant off it before scoring, so
    concurrent requests cannot spend one unit twice; a session this process never saw gets no
    grant. The answer is queued for the store (``settle_later``): once Redis answers, the
    request id holds it and the budget is charged for a fail-open intervene (refunded for any
    late charge of the request's own script).
    """
    claim = body.remaining_budget
    known = None if cached is None else cached.remaining
    if known is not None and claim is not None:
        known = min(known, claim)
    c = known if known is not None else (claim if claim is not None else 0)
    horizon = (cached.horizon if cached else None) or scorer0.horizon
    left = body.steps_left if body.steps_left is not None else max(horizon - body.step, 0)
    cost = scorer0.cost
    is_open = svc.settings.fail_mode == "open"
    reserved = is_open and cached is not None and known is not None and known >= cost
    if reserved:
        assert cached is not None  # noqa: S101 - implied by reserved
        cached.remaining -= cost  # taken before any await: one unit is never granted twice
    scorer, scored = await _score(svc, feats, body, c, c, left)
    go = reserved and bool(scored.intervene[0])
    if reserved and not go:
        assert cached is not None  # noqa: S101 - implied by reserved
        cached.remaining += cost
    out = _outcome(
        body,
        tenant,
        rid,
        scorer,
        scored,
        before=c,
        go=go,
        reason="fail_open" if is_open else "fail_closed",
        left=left,
        degraded=True,
    )
    r = out.response
    svc.store.settle_later(
        key,
        Record(
            request_id=rid,
            digest=digest,
            charge=cost if go else 0,
            granted=go,
            before=c,
            remaining=r.remaining_budget,
            wanted=go,
            answer=encode_answer(r),
        ),
    )
    return out


def _outcome(
    body: DecisionRequest,
    tenant: str,
    rid: str,
    scorer: Scorer,
    scored: Scored,
    *,
    before: int,
    go: bool,
    reason: Any,
    left: int,
    after: int | None = None,
    degraded: bool = False,
) -> Outcome:
    """Build the answer; ``after`` defaults to ``before`` less the cost when intervening."""
    if after is None:
        after = before - scorer.cost if go else before
    i = scored.at(before)
    response = DecisionResponse(
        intervene=go,
        probability=float(scored.probability[i]),
        remaining_budget=after,
        reason=reason,
        model_version=scorer.model_version,
        degraded=degraded,
        novel=scored.novel,
        novelty_score=scored.novelty_score,
        request_id=rid,
        budget_clipped=bool(scored.budget_clipped[i]),
    )
    return Outcome(
        response=response,
        asked=bool(scored.asks[i]),
        charged=(before - after) if (go and not degraded) else 0,
        before=before,
        steps_left=left,
        replayed=False,
        tenant=tenant,
        features=body.state.features,
        text=body.state.text,
    )
