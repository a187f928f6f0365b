"""Request ids over HTTP: a replay is the recorded answer byte for byte, a reused id with
another body is a 422 naming it, and the records a session keeps are bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from service.decisions import decode_answer, encode_answer
from service.schemas import DecisionResponse
from tests.conftest import write_test_artifact
from tests.service.conftest import running_app

UP = [1.0, 0.0, 0.0, 0.0]  # the test helper intervenes here


def _q(sid: str, rid: str, step: int = 3, features: list[float] = UP) -> dict[str, Any]:
    return {"session_id": sid, "request_id": rid, "step": step, "state": {"features": features}}


@pytest.mark.asyncio
async def test_replay_is_byte_identical_even_after_the_budget_moved(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=artifact_dir, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        answers = await asyncio.gather(
            *(c.post("/v1/should_intervene", json=_q(sid, "once")) for _ in range(20))
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 9
        for i in range(3):  # spend more: the replay must not be re-scored at the new budget
            await c.post("/v1/should_intervene", json=_q(sid, f"other-{i}"))
        again = await c.post("/v1/should_intervene", json=_q(sid, "once"))
        header = await c.post(
            "/v1/should_intervene",
            json={k: v for k, v in _q(sid, "once").items() if k != "request_id"},
            headers={"Idempotency-Key": "once"},
        )
        assert again.content == header.content == answers[0].content
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 6


@pytest.mark.asyncio
async def test_replays_of_granted_refused_and_exhausted_answers_are_identical(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    down = [-1.0, 0.0, 0.0, 0.0]  # the helper proceeds here
    async with running_app(artifact=artifact_dir, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 1})).json()["session_id"]
        qs = [_q(sid, "no", features=down), _q(sid, "yes"), _q(sid, "exhausted")]
        firsts = [await c.post("/v1/should_intervene", json=q) for q in qs]
        assert [r.json()["reason"] for r in firsts] == ["helper", "helper", "budget_exhausted"]
        assert [r.json()["intervene"] for r in firsts] == [False, True, False]
        for q, first in zip(qs, firsts, strict=True):
            assert (await c.post("/v1/should_intervene", json=q)).content == first.content


@pytest.mark.asyncio
async def test_replay_after_a_model_reload_is_the_recorded_answer_not_a_rescore(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    art = write_test_artifact(tmp_path / "art", artifact_id="v1")
    async with running_app(artifact=art, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        first = await c.post("/v1/should_intervene", json=_q(sid, "before-reload"))
        assert first.json()["intervene"] is True and first.json()["model_version"] == "v1"
        write_test_artifact(art, artifact_id="v2", gain=-4.0)  # the new helper never asks here
        assert (await c.post("/admin/reload")).status_code == 200
        again = await c.post("/v1/should_intervene", json=_q(sid, "before-reload"))
        assert again.content == first.content
        fresh = await c.post("/v1/should_intervene", json=_q(sid, "after-reload"))
        assert fresh.json()["model_version"] == "v2" and fresh.json()["intervene"] is False


@pytest.mark.asyncio
async def test_reused_request_id_with_another_body_is_a_422_naming_it(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=artifact_dir, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        assert (await c.post("/v1/should_intervene", json=_q(sid, "r1"))).status_code == 200
        for other in (_q(sid, "r1", step=4), _q(sid, "r1", features=[0.5, 0.0, 0.0, 0.0])):
            r = await c.post("/v1/should_intervene", json=other)
            assert r.status_code == 422, r.text
            (d,) = r.json()["detail"]
            assert d["loc"] == ["body", "request_id"] and "'r1'" in d["msg"]
            assert "different body" in d["msg"]
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 9
        assert (await c.post("/v1/should_intervene", json=_q(sid, "r1"))).status_code == 200


@pytest.mark.asyncio
async def test_request_id_records_stay_bounded_on_an_active_session(
    artifact_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    async with running_app(
        artifact=artifact_dir,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        request_id_cap=50,
    ) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
        for i in range(300):
            r = await c.post("/v1/should_intervene", json=_q(sid, f"id-{i}", step=i % 20))
            assert r.status_code == 200
        raw = redis_sync.Redis.from_url(redis_url)
        base = f"{redis_prefix}{{public:{sid}}}"
        sizes = [raw.hlen(base + ":req"), raw.hlen(base + ":req:old")]
        ttls = [raw.pttl(base + ":req"), raw.pttl(base + ":req:old")]
        raw.close()
        assert sum(sizes) <= 100 and sizes[0] <= 50, sizes  # 300 ids sent
        assert all(t > 0 for t in ttls)  # and they expire with the session
        last = await c.post("/v1/should_intervene", json=_q(sid, "id-299", step=299 % 20))
        assert last.status_code == 200  # the newest ids still replay (not charged again)
        assert (await c.get(f"/v1/sessions/{sid}")).json()["remaining_budget"] == 0


def test_recorded_answer_text_round_trips_every_response_field() -> None:
    r = DecisionResponse(
        intervene=True,
        probability=0.5310396388666275,
        remaining_budget=7,
        reason="fail_open",
        model_version="m v\t1",
        degraded=True,
        novel=True,
        novelty_score=1e-05,
        request_id="x",
        budget_clipped=True,
        type=None,
        remaining_budgets=None,  # one-type answers (typed: typed_decisions' text)
    )
    back = decode_answer(encode_answer(r), "x")
    assert back == r and set(r.model_fields_set) == set(DecisionResponse.model_fields)
    ser = DecisionResponse.__pydantic_serializer__
    assert ser.to_json(back) == ser.to_json(r)
