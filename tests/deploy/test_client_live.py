"""The SDK against the real service: 2 uvicorn workers, a private Redis, API keys on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from helpseek_client import (
    AsyncHelpSeekClient,
    AuthError,
    ConflictError,
    Decision,
    HelpSeekClient,
    NotFoundError,
    RetryPolicy,
    TransportError,
    ValidationError,
)
from tests.deploy.deploy_harness import Proc, free_port

UP, DOWN = [1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]  # the toy helper intervenes iff f0 > mean


@pytest.fixture(scope="module")
def svc(live_service: tuple[Proc, Proc, object]) -> Proc:
    return live_service[0]


@pytest.fixture
def hs(svc: Proc):
    with HelpSeekClient(svc.url, api_key="key-a") as client:
        yield client


def test_an_episode_through_the_sdk(hs: HelpSeekClient) -> None:
    model = hs.model()
    assert model.model_version == "toy-v1" and model.feature_dim == 4
    assert model.target_intervention_rate == pytest.approx(0.3)
    session = hs.start_session(budget=2, horizon=50, metadata={"agent": "test"})
    assert session.budget == 2 and session.expires_at is not None
    answers = [
        hs.should_intervene(session.session_id, step=t, features=f, steps_left=50 - t)
        for t, f in enumerate([UP, DOWN, UP, UP])
    ]
    assert all(isinstance(a, Decision) for a in answers)
    assert [a.intervene for a in answers] == [True, False, True, False]
    assert [a.reason for a in answers] == ["helper", "helper", "helper", "budget_exhausted"]
    assert [a.remaining_budget for a in answers] == [1, 1, 0, 0]
    assert all(a.model_version == "toy-v1" and not a.degraded for a in answers)
    status = hs.session(session.session_id)
    assert (status.budget, status.remaining_budget, status.closed) == (2, 0, False)
    closed = hs.report_outcome(session.session_id, success=True, steps=17)
    assert (
        closed.closed and closed.success and closed.steps == 17 and closed.interventions_used == 2
    )
    assert hs.session(session.session_id).success is True
    with pytest.raises(ConflictError):
        hs.report_outcome(session.session_id, success=False, steps=18)


def test_a_replayed_request_id_is_charged_once(hs: HelpSeekClient) -> None:
    sid = hs.start_session(budget=3).session_id
    first = hs.should_intervene(sid, step=0, features=UP, request_id="ep1-step0")
    again = hs.should_intervene(sid, step=0, features=UP, request_id="ep1-step0")
    assert first == again and first.intervene
    assert hs.session(sid).remaining_budget == 2


def test_stateless_mode_uses_the_callers_budget(hs: HelpSeekClient) -> None:
    assert hs.should_intervene(step=0, features=UP, remaining_budget=1).intervene
    zero = hs.should_intervene(step=0, features=UP, remaining_budget=0)
    assert not zero.intervene and zero.reason == "budget_exhausted"


def test_novel_states_are_flagged(hs: HelpSeekClient) -> None:
    d = hs.should_intervene(step=0, features=[40.0, 0.0, 0.0, 0.0], remaining_budget=1)
    assert d.novel and d.novelty_score is not None and d.novelty_score > 10


def test_validation_errors_name_the_field(hs: HelpSeekClient) -> None:
    with pytest.raises(ValidationError) as info:
        hs.should_intervene(step=0, features=[1.0, 2.0], remaining_budget=1)
    assert info.value.status == 422
    assert any("features" in loc for loc, _ in info.value.fields), info.value.fields
    with pytest.raises(ValidationError) as info:
        hs.start_session(budget=-1)
    assert any(loc.endswith("budget") for loc, _ in info.value.fields)


def test_auth_and_tenant_isolation(svc: Proc, hs: HelpSeekClient) -> None:
    sid = hs.start_session(budget=1).session_id
    with HelpSeekClient(svc.url) as anonymous, pytest.raises(AuthError) as info:
        anonymous.model()
    assert info.value.status == 401
    with HelpSeekClient(svc.url, api_key="wrong") as wrong, pytest.raises(AuthError):
        wrong.start_session(budget=1)
    with HelpSeekClient(svc.url, api_key="key-b") as other:
        with pytest.raises(NotFoundError):
            other.session(sid)
        with pytest.raises(NotFoundError):
            other.should_intervene(sid, step=0, features=UP)
    assert hs.session(sid).remaining_budget == 1


def test_concurrent_async_asks_never_exceed_the_budget(svc: Proc) -> None:
    async def main() -> list[Decision]:
        async with AsyncHelpSeekClient(svc.url, api_key="key-a") as hs:
            s = await hs.start_session(budget=5)
            answers = await asyncio.gather(
                *(hs.should_intervene(s.session_id, step=i, features=UP) for i in range(24))
            )
            status = await hs.session(s.session_id)
            assert status.remaining_budget == 0
            return list(answers)

    answers = asyncio.run(main())
    assert sum(a.intervene for a in answers) == 5
    assert sum(a.reason == "budget_exhausted" for a in answers) == 19


def test_unreachable_service_is_a_transport_error() -> None:
    policy = RetryPolicy(attempts=2, backoff_s=0.01)
    with (
        HelpSeekClient(f"http://127.0.0.1:{free_port()}", retry=policy, timeout=1.0) as hs,
        pytest.raises(TransportError, match="after 2 tries"),
    ):
        hs.model()


def test_raw_http_and_sdk_agree(svc: Proc, hs: HelpSeekClient) -> None:
    """The SDK's request is the documented wire format: the same body by hand gets the same answer."""
    body = {"step": 0, "state": {"features": UP}, "remaining_budget": 1, "request_id": "raw-1"}
    raw = httpx.post(
        f"{svc.url}/v1/should_intervene", json=body, headers={"X-API-Key": "key-a"}
    ).json()
    sdk = hs.should_intervene(step=0, features=UP, remaining_budget=1, request_id="raw-1")
    assert Decision.from_json(raw) == sdk


def test_the_documented_example_runs(svc: Proc, repo) -> None:
    """The SDK example in README.md and docs/deployment.md, executed as written (URL and key swapped in)."""
    import re

    for doc in ("README.md", "docs/deployment.md"):
        text = (repo / doc).read_text()
        block = re.search(r"<!-- sdk-example.*?-->\n```python\n(.*?)```", text, re.S)
        assert block, f"the SDK example block is missing from {doc}"
        code = block.group(1)
        assert len(code.strip().splitlines()) <= 12
        code = code.replace("http://127.0.0.1:8000", svc.url)
        code = code.replace("api_key=None", 'api_key="key-a"')
        exec(compile(code, doc, "exec"), {})
