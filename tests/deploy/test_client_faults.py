"""SDK retries and errors, with faults injected by httpx.MockTransport (no server can be made
to drop a connection on cue). The happy path runs against the real service in
test_client_live.py."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest

from helpseek_client import (
    APIError,
    AsyncHelpSeekClient,
    AuthError,
    ConflictError,
    HelpSeekClient,
    NotFoundError,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)

FAST = RetryPolicy(attempts=3, backoff_s=0.0, backoff_max_s=0.0)
ANSWER = {
    "intervene": True,
    "probability": 0.9,
    "remaining_budget": 2,
    "reason": "helper",
    "model_version": "m1",
    "degraded": False,
    "novel": False,
    "novelty_score": 0.4,
}


class Script:
    """A fake server that plays a list of behaviours, one per request, and records requests."""

    def __init__(self, *steps: object) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == "ok":
            body = json.loads(request.content)
            return httpx.Response(200, json={**ANSWER, "request_id": body["request_id"]})
        assert isinstance(step, httpx.Response)
        return step

    def keys(self) -> list[tuple[str | None, str]]:
        return [
            (r.headers.get("Idempotency-Key"), json.loads(r.content)["request_id"])
            for r in self.requests
        ]


def client(script: Script, **kw: object) -> HelpSeekClient:
    return HelpSeekClient("http://hs", transport=httpx.MockTransport(script), retry=FAST, **kw)  # type: ignore[arg-type]


def ask(hs: HelpSeekClient, **kw: object):
    return hs.should_intervene("s1", step=3, features=[0.1, 0.2], **kw)  # type: ignore[arg-type]


def test_retries_reuse_one_idempotency_key() -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(503, json={"detail": "shed"}), "ok")
    decision = ask(client(script))
    keys = script.keys()
    assert len(keys) == 3
    assert len({k for pair in keys for k in pair}) == 1  # header == body, same on every try
    assert decision.request_id == keys[0][0]
    assert decision.intervene and decision.remaining_budget == 2


def test_given_request_id_is_used_verbatim() -> None:
    script = Script(httpx.ConnectError("refused"), "ok")
    decision = ask(client(script), request_id="ep7-step3")
    assert script.keys() == [("ep7-step3", "ep7-step3")] * 2
    assert decision.request_id == "ep7-step3"


def test_each_logical_call_gets_a_new_request_id() -> None:
    script = Script("ok", "ok")
    hs = client(script)
    ask(hs), ask(hs)
    assert script.keys()[0] != script.keys()[1]


def test_gives_up_after_the_attempts_with_a_transport_error() -> None:
    script = Script(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(TransportError, match=r"ConnectError after 3 tries"):
        ask(client(script))
    assert len(script.requests) == 3


def test_persistent_503_is_service_unavailable() -> None:
    script = Script(*[httpx.Response(503, json={"detail": "budget store unavailable"})] * 3)
    with pytest.raises(ServiceUnavailable) as info:
        ask(client(script))
    assert info.value.status == 503 and info.value.detail == "budget store unavailable"
    assert len(script.requests) == 3


def test_session_creation_is_not_retried_after_the_request_was_sent() -> None:
    """A read timeout may mean the session exists: retrying would open a second one."""
    script = Script(httpx.ReadTimeout("slow"), "unused")
    with pytest.raises(TransportError):
        client(script).start_session(budget=3)
    assert len(script.requests) == 1


def test_session_creation_is_retried_when_the_connection_failed() -> None:
    created = httpx.Response(201, json={"session_id": "s1", "budget": 3, "expires_at": 1.8e9})
    script = Script(httpx.ConnectError("refused"), created)
    session = client(script).start_session(budget=3, horizon=25)
    assert session.session_id == "s1" and session.budget == 3
    assert session.expires_at is not None and session.expires_at.year >= 2027
    assert json.loads(script.requests[0].content) == {"budget": 3, "horizon": 25}


def test_outcome_is_not_retried_on_503() -> None:
    script = Script(httpx.Response(503, json={"detail": "down"}), "unused")
    with pytest.raises(ServiceUnavailable):
        client(script).report_outcome("s1", success=True, steps=9)
    assert len(script.requests) == 1


def test_retry_after_header_is_honoured_within_the_cap() -> None:
    policy = RetryPolicy(attempts=2, backoff_s=0.0, backoff_max_s=0.5)
    rng = random.Random(0)
    assert policy.delay(0, rng, "0.2") == pytest.approx(0.2)
    assert policy.delay(0, rng, "30") == 0.5
    assert 0.0 <= policy.delay(5, rng) <= 0.5
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("status", "detail", "error"),
    [
        (
            422,
            [{"loc": ["body", "step"], "msg": "Input should be >= 0", "type": "x"}],
            ValidationError,
        ),
        (401, "missing API key", AuthError),
        (404, "unknown session", NotFoundError),
        (409, "outcome already reported", ConflictError),
        (500, "boom", APIError),
    ],
)
def test_error_statuses_map_to_the_exception_tree(status: int, detail: object, error: type) -> None:
    script = Script(httpx.Response(status, json={"detail": detail}))
    with pytest.raises(error) as info:
        ask(client(script))
    assert type(info.value) is error
    assert info.value.status == status and info.value.detail == detail
    assert len(script.requests) == 1  # client errors are never retried
    if status == 422:
        assert info.value.fields == [("body.step", "Input should be >= 0")]
        assert "body.step: Input should be >= 0" in str(info.value)


def test_a_success_that_breaks_the_contract_is_unexpected_response() -> None:
    script = Script(httpx.Response(200, json={"intervene": "yes"}))
    with pytest.raises(UnexpectedResponse, match="probability|intervene"):
        ask(client(script))
    script = Script(httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(UnexpectedResponse, match="not JSON"):
        ask(client(script))


def test_api_key_is_sent_as_x_api_key() -> None:
    script = Script("ok")
    ask(client(script, api_key="secret"))
    assert script.requests[0].headers["X-API-Key"] == "secret"


def test_arguments_are_checked_before_sending() -> None:
    script = Script()
    hs = client(script)
    with pytest.raises(ValueError, match="exactly one"):
        hs.should_intervene("s1", step=0, features=[1.0], text="hi")
    with pytest.raises(ValueError, match="remaining_budget"):
        hs.should_intervene(step=0, features=[1.0])
    assert script.requests == []


def test_async_client_retries_with_the_same_key() -> None:
    script = Script(
        httpx.RemoteProtocolError("reset"), httpx.Response(502, text="bad gateway"), "ok"
    )

    async def main() -> None:
        async with AsyncHelpSeekClient(
            "http://hs", transport=httpx.MockTransport(script), retry=FAST
        ) as hs:
            d = await hs.should_intervene(step=0, features=[0.0], remaining_budget=1)
            assert d.intervene

    asyncio.run(main())
    keys = script.keys()
    assert len(keys) == 3 and len({k for pair in keys for k in pair}) == 1
    assert json.loads(script.requests[0].content)["remaining_budget"] == 1


def test_async_client_raises_the_same_errors() -> None:
    script = Script(httpx.Response(404, json={"detail": "unknown session"}))

    async def main() -> None:
        async with AsyncHelpSeekClient(
            "http://hs", transport=httpx.MockTransport(script), retry=FAST
        ) as hs:
            await hs.session("nope")

    with pytest.raises(NotFoundError, match="GET /v1/sessions/nope -> 404: unknown session"):
        asyncio.run(main())


def test_sdk_imports_no_server_side_code() -> None:
    """Agents install the SDK alone: importing it must not pull service, training or numpy."""
    import subprocess
    import sys

    code = (
        "import sys, helpseek_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'service', 'training', 'helpseek_core', 'numpy', 'fastapi', 'torch', 'redis'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
