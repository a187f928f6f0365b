"""What the sync and async clients share: request building, retry policy, answer parsing.

Only the sending differs between :class:`~helpseek_client.HelpSeekClient` and
:class:`~helpseek_client.AsyncHelpSeekClient`; every request is first described as a
:class:`Call` here, so both clients build identical requests and read answers identically.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from helpseek_client.errors import (
    HelpSeekClientError,
    TransportError,
    UnexpectedResponse,
    error_for_status,
)

__all__ = [
    "API_KEY_HEADER",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENCY_HEADER",
    "Call",
    "RetryPolicy",
    "decision_call",
    "new_request_id",
    "outcome_call",
    "parse",
    "transport_error",
]

API_KEY_HEADER = "X-API-Key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Decisions sit on the agent's hot path: fail fast rather than stall an episode.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


def new_request_id() -> str:
    """Return a fresh request id (uuid4 hex); generated once per logical call, reused by retries."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed call.

    A call is tried at most ``attempts`` times. Between tries the client sleeps an
    exponentially growing, fully jittered delay (``backoff_s * 2**n``, capped at
    ``backoff_max_s``), or the server's ``Retry-After`` when it sends one (same cap).
    Idempotent calls (decisions, which carry an Idempotency-Key, and reads) are retried on
    any transport error and on ``retry_statuses``; the others only when the connection
    could not be opened, i.e. the request surely never reached the server.
    """

    attempts: int = 3
    backoff_s: float = 0.05
    backoff_max_s: float = 1.0
    retry_statuses: frozenset[int] = frozenset({502, 503, 504})

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy: attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            raise ValueError("RetryPolicy: backoff times must be >= 0")

    def delay(self, retry: int, rng: random.Random, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.backoff_max_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return rng.uniform(0.0, min(self.backoff_s * (2.0**retry), self.backoff_max_s))

    def should_retry_status(self, call: Call, status: int, tried: int) -> bool:
        """Retry this status? Only idempotent calls with tries left."""
        return call.idempotent and status in self.retry_statuses and tried < self.attempts

    def should_retry_error(self, call: Call, exc: httpx.TransportError, tried: int) -> bool:
        """Retry this transport error? Connect failures always; others if idempotent."""
        if tried >= self.attempts:
            return False
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return never_sent or call.idempotent


@dataclass(frozen=True)
class Call:
    """One logical API call: its request, whether retrying it is safe, and how to read it."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False
    expect: tuple[int, ...] = (200,)


def session_call(
    budget: int | None,
    budgets: Mapping[str, int] | None,
    ttl_s: float | None,
    horizon: int | None,
    metadata: Mapping[str, Any] | None,
    explore: bool | float | None = None,
) -> Call:
    """Describe ``POST /v1/sessions``: ``budget``, or ``budgets`` (one per type, typed models).

    ``explore=0.3`` starts an exploration session (intervene at random with probability 0.3);
    ``explore=True`` lets the server pick p from its schedule.
    """
    if (budget is None) == (budgets is None):
        raise ValueError("start_session: give exactly one of budget= or budgets=")
    body: dict[str, Any] = (
        {"budget": int(budget)}
        if budget is not None
        else {"budgets": {str(k): int(v) for k, v in (budgets or {}).items()}}
    )
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    if horizon is not None:
        body["horizon"] = int(horizon)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if explore is True or explore is False:
        body["explore"] = explore
    elif explore is not None:
        body["explore"] = {"p": float(explore)}
    return Call(
        "POST", "/v1/sessions", body, {IDEMPOTENCY_HEADER: new_request_id()}, expect=(200, 201)
    )


def decision_call(
    session_id: str | None,
    step: int,
    features: Iterable[float] | None,
    text: str | None,
    remaining_budget: int | None,
    steps_left: int | None,
    request_id: str | None,
    remaining_budgets: Mapping[str, int] | None = None,
    state_key: int | None = None,
    action_taken: int | None = None,
) -> Call:
    """Describe ``POST /v1/should_intervene``; the request id doubles as Idempotency-Key."""
    if (features is None) == (text is None):
        raise ValueError("should_intervene: give exactly one of features= or text=")
    if session_id is None and remaining_budget is None and remaining_budgets is None:
        raise ValueError(
            "should_intervene: without a session_id, remaining_budget= (or remaining_budgets= "
            "for a typed model) is required"
        )
    rid = request_id or new_request_id()
    state: dict[str, Any] = (
        {"features": [float(x) for x in features]} if features is not None else {"text": text}
    )
    if state_key is not None:
        state["key"] = int(state_key)
    body: dict[str, Any] = {"request_id": rid, "step": int(step), "state": state}
    if action_taken is not None:
        body["action_taken"] = int(action_taken)
    if session_id is not None:
        body["session_id"] = session_id
    if remaining_budget is not None:
        body["remaining_budget"] = int(remaining_budget)
    if remaining_budgets is not None:
        body["remaining_budgets"] = {str(k): int(v) for k, v in remaining_budgets.items()}
    if steps_left is not None:
        body["steps_left"] = int(steps_left)
    return Call(
        "POST",
        "/v1/should_intervene",
        body,
        headers={IDEMPOTENCY_HEADER: rid},
        idempotent=True,
    )


def outcome_call(session_id: str, success: bool, steps: int, action_taken: int | None) -> Call:
    """Describe ``POST /v1/sessions/{id}/outcome`` (``action_taken``: the last decision's)."""
    body: dict[str, Any] = {"success": bool(success), "steps": int(steps)}
    if action_taken is not None:
        body["action_taken"] = int(action_taken)
    return Call(
        "POST",
        f"/v1/sessions/{session_id}/outcome",
        body,
        {IDEMPOTENCY_HEADER: new_request_id()},
        expect=(200, 201, 202),
    )


def parse(call: Call, response: httpx.Response) -> Mapping[str, Any]:
    """Return the JSON object of an expected answer, or raise the matching error."""
    if response.status_code not in call.expect:
        try:
            payload = response.json()
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
        except ValueError:
            detail = response.text[:500] or response.reason_phrase
        raise error_for_status(response.status_code, detail, call.method, call.path)
    try:
        body = response.json()
    except ValueError as exc:
        raise UnexpectedResponse(
            f"{call.method} {call.path} -> {response.status_code}: body is not JSON "
            f"({response.text[:200]!r})"
        ) from exc
    if not isinstance(body, dict):
        raise UnexpectedResponse(
            f"{call.method} {call.path}: expected a JSON object, got {body!r:.200}"
        )
    return body


def transport_error(call: Call, exc: httpx.TransportError, tries: int) -> HelpSeekClientError:
    """Wrap httpx's error, saying which call failed and after how many tries."""
    kind = type(exc).__name__
    return TransportError(f"{call.method} {call.path}: {kind} after {tries} tries: {exc}")
