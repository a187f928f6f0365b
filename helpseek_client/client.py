"""Synchronous HelpSeek client (httpx).

Example::

    with HelpSeekClient("http://127.0.0.1:8000", api_key="...") as hs:
        session = hs.start_session(budget=3)
        answer = hs.should_intervene(session.session_id, step=0, features=[0.1, 0.2])
        hs.report_outcome(session.session_id, success=True, steps=17)
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from typing import Any, Self

import httpx

from helpseek_client._calls import (
    API_KEY_HEADER,
    DEFAULT_TIMEOUT,
    Call,
    RetryPolicy,
    decision_call,
    outcome_call,
    parse,
    session_call,
    transport_error,
)
from helpseek_client.models import Decision, ModelInfo, Session, SessionStatus

__all__ = ["HelpSeekClient"]


class HelpSeekClient:
    """Blocking client for one HelpSeek service; thread-safe, reuse one per process.

    ``timeout`` is httpx's (seconds, or an :class:`httpx.Timeout`); ``retry`` says how failed
    calls are retried (see :class:`RetryPolicy`). ``transport`` and ``headers`` are passed to
    :class:`httpx.Client` (a proxy, custom TLS, or a test transport).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        hdrs = dict(headers or {})
        if api_key is not None:
            hdrs[API_KEY_HEADER] = api_key
        self.retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers=hdrs, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, call: Call) -> Mapping[str, Any]:
        tried = 0
        while True:
            tried += 1
            try:
                response = self._http.request(
                    call.method, call.path, json=call.body, headers=dict(call.headers)
                )
            except httpx.TransportError as exc:
                if not self.retry.should_retry_error(call, exc, tried):
                    raise transport_error(call, exc, tried) from exc
                time.sleep(self.retry.delay(tried - 1, self._rng))
                continue
            if self.retry.should_retry_status(call, response.status_code, tried):
                time.sleep(
                    self.retry.delay(tried - 1, self._rng, response.headers.get("Retry-After"))
                )
                continue
            return parse(call, response)

    def start_session(
        self,
        budget: int | None = None,
        *,
        budgets: Mapping[str, int] | None = None,
        ttl_s: float | None = None,
        horizon: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        explore: bool | float | None = None,
    ) -> Session:
        """Open an episode with ``budget`` interventions; the server then owns the budget.

        A typed model (``model().types``) takes ``budgets``: one budget per intervention type,
        e.g. ``budgets={"hint": 3, "takeover": 1}``. ``explore=p`` starts an exploration
        session (intervene at random with probability p, logged for training; no model
        needed); ``explore=True`` takes p from the server's schedule.
        """
        call = session_call(budget, budgets, ttl_s, horizon, metadata, explore)
        return Session.from_json(self._send(call))

    def should_intervene(
        self,
        session_id: str | None = None,
        *,
        step: int,
        features: Iterable[float] | None = None,
        text: str | None = None,
        remaining_budget: int | None = None,
        steps_left: int | None = None,
        request_id: str | None = None,
        remaining_budgets: Mapping[str, int] | None = None,
        state_key: int | None = None,
        action_taken: int | None = None,
    ) -> Decision:
        """Ask whether to intervene now; an intervention answer has already been charged.

        Give the state as ``features`` (numbers, in the artifact's order) or as ``text``.
        Without ``session_id`` the call is stateless and ``remaining_budget`` is required.
        Retries reuse one ``request_id``, so a retried call is never charged twice.
        """
        call = decision_call(
            session_id,
            step,
            features,
            text,
            remaining_budget,
            steps_left,
            request_id,
            remaining_budgets,
            state_key,
            action_taken,
        )
        return Decision.from_json(self._send(call))

    def report_outcome(
        self, session_id: str, *, success: bool, steps: int, action_taken: int | None = None
    ) -> SessionStatus:
        """Close the episode with its outcome (feeds metrics and the decision log).

        ``action_taken`` says what the agent did at the last decision when it did not follow
        the answer (1 asked for help, 0 did not); ``should_intervene(action_taken=...)`` says
        the same of the previous decision.
        """
        call = outcome_call(session_id, success, steps, action_taken)
        return SessionStatus.from_json(self._send(call), session_id)

    def reload_model(self) -> Mapping[str, Any]:
        """``POST /admin/reload``: serve the artifact now at the server's path (admin key)."""
        call = Call("POST", "/admin/reload", None, {}, expect=(200,))
        return self._send(call)

    def session(self, session_id: str) -> SessionStatus:
        """Return what the server knows about a session (budget left, outcome)."""
        call = Call("GET", f"/v1/sessions/{session_id}", idempotent=True)
        return SessionStatus.from_json(self._send(call), session_id)

    def model(self) -> ModelInfo:
        """Return the artifact being served."""
        return ModelInfo.from_json(self._send(Call("GET", "/v1/model", idempotent=True)))
