"""Exploration sessions and the explore-only service (issue 12 item 3), over both stores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.conftest import write_test_artifact
from tests.service.conftest import running_app
from training.export_log import ExportConfig
from training.export_log import main as export_main
from training.steplog_io import read_steplog

pytestmark = pytest.mark.asyncio
UP = [1.0, 0.0, 0.0, 0.0]  # the test helper intervenes here
DOWN = [-1.0, 0.0, 0.0, 0.0]  # ... and proceeds here


def records(path: Path, kind: str = "decision") -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r["record"] == kind]


async def test_explore_session_intervenes_at_rate_p_independent_of_the_helper(
    artifact_dir: Path, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "d.jsonl"
    n, p = 400, 0.3
    async with running_app(artifact=artifact_dir, decision_log=str(log), **store_settings) as (
        c,
        _,
    ):
        r = await c.post("/v1/sessions", json={"budget": n, "explore": {"p": p}})
        assert r.status_code == 201, r.text
        assert r.json()["explore_p"] == p
        sid = r.json()["session_id"]
        got = []
        for t in range(n):
            state = {"features": UP if t % 2 else DOWN}
            r = await c.post(
                "/v1/should_intervene",
                json={"session_id": sid, "step": t, "state": state, "steps_left": 5},
            )
            assert r.status_code == 200, r.text
            got.append(r.json())
        info = (await c.get(f"/v1/sessions/{sid}")).json()
    used = sum(a["intervene"] for a in got)
    sd = math.sqrt(n * p * (1 - p))
    assert abs(used - n * p) < 4.5 * sd, used  # Binomial(400, 0.3): 120 +- 41
    for half in (got[0::2], got[1::2]):  # the helper says no / yes: the rate is p either way
        k = sum(a["intervene"] for a in half)
        assert abs(k - len(half) * p) < 4.5 * math.sqrt(len(half) * p * (1 - p)), k
    assert {a["reason"] for a in got} == {"explore"}
    assert {a["probability"] for a in got} == {p}
    assert info["remaining_budget"] == n - used
    recs = records(log)
    assert len(recs) == n
    assert [bool(x["action"]) for x in recs] == [a["intervene"] for a in got]
    assert {x["behavior_p"] for x in recs} == {p}
    assert sum(x["cost"] for x in recs) == used


async def test_budget_is_enforced_and_behavior_p_is_zero_when_it_cannot_pay(
    artifact_dir: Path, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "d.jsonl"
    async with running_app(artifact=artifact_dir, decision_log=str(log), **store_settings) as (
        c,
        _,
    ):
        sid = (await c.post("/v1/sessions", json={"budget": 3, "explore": {"p": 1.0}})).json()[
            "session_id"
        ]
        answers = [
            (
                await c.post(
                    "/v1/should_intervene",
                    json={"session_id": sid, "step": t, "state": {"features": DOWN}},
                )
            ).json()
            for t in range(5)
        ]
        zero = (await c.post("/v1/sessions", json={"budget": 3, "explore": {"p": 0}})).json()
        none = [
            (
                await c.post(
                    "/v1/should_intervene",
                    json={"session_id": zero["session_id"], "step": t, "state": {"text": "x"}},
                )
            ).json()["intervene"]
            for t in range(20)
        ]
    assert [a["intervene"] for a in answers] == [True, True, True, False, False]
    assert [a["remaining_budget"] for a in answers] == [2, 1, 0, 0, 0]
    assert [a["reason"] for a in answers][3:] == ["budget_exhausted"] * 2
    assert [x["behavior_p"] for x in records(log)[:5]] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert not any(none)


async def test_retry_replays_the_explore_answer_and_charges_once(
    artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=artifact_dir, **store_settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 50, "explore": {"p": 0.5}})).json()[
            "session_id"
        ]
        for t in range(10):
            body = {"session_id": sid, "step": t, "state": {"features": UP}, "request_id": f"r{t}"}
            first = (await c.post("/v1/should_intervene", json=body)).json()
            again = (await c.post("/v1/should_intervene", json=body)).json()
            assert again == first
        info = (await c.get(f"/v1/sessions/{sid}")).json()
    assert info["remaining_budget"] == first["remaining_budget"]


async def test_explore_true_sweeps_the_schedule(artifact_dir: Path) -> None:
    async with running_app(artifact=artifact_dir, explore_schedule=[0.0, 0.5, 1.0]) as (c, _):
        ps = [
            (await c.post("/v1/sessions", json={"budget": 1, "explore": True})).json()["explore_p"]
            for _ in range(7)
        ]
        helper = (await c.post("/v1/sessions", json={"budget": 1, "explore": False})).json()
    assert ps == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0, 0.0]
    assert helper["explore_p"] is None
    assert Settings().explore_schedule == [i / 10 for i in range(11)]  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"budget": 1, "explore": {"p": 1.5}}, ["body", "explore", "Explore", "p"]),
        ({"budget": 1, "explore": {"p": -0.1}}, ["body", "explore", "Explore", "p"]),
        ({"budget": 1, "explore": {"p": "0.3"}}, ["body", "explore", "Explore", "p"]),
        ({"budget": 1, "explore": {"q": 0.3}}, ["body", "explore", "Explore", "q"]),
        ({"budget": 1, "explore": 0.3}, ["body", "explore", "bool"]),
        ({"explore": {"p": 0.3}}, ["body", "budget"]),
        ({"budget": 1, "explore": True, "metadata": {"helpseek.explore_p": 1}}, ["body"]),
    ],
)
async def test_bad_explore_settings_are_422_naming_the_field(
    artifact_dir: Path, body: dict[str, Any], loc: list[str]
) -> None:
    async with running_app(artifact=artifact_dir) as (c, _):
        r = await c.post("/v1/sessions", json=body)
    assert r.status_code == 422, r.text
    locs = [d["loc"] for d in r.json()["detail"]]
    assert any(x[: len(loc)] == loc for x in locs), locs


async def test_schedule_out_of_range_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="explore_schedule"):
        Settings(explore_schedule=[0.0, 1.2])  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="explore_schedule"):
        Settings(explore_schedule=[])  # type: ignore[call-arg]


async def test_state_key_and_action_taken_reach_the_log_and_the_export(
    artifact_dir: Path, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "d.jsonl"
    async with running_app(artifact=artifact_dir, decision_log=str(log), **store_settings) as (
        c,
        _,
    ):
        for e in range(4):
            sid = (
                await c.post(
                    "/v1/sessions", json={"budget": 9, "horizon": 10, "explore": {"p": 0.0}}
                )
            ).json()["session_id"]
            for t in range(3):
                body: dict[str, Any] = {
                    "session_id": sid,
                    "step": t,
                    "state": {"features": DOWN, "key": -(2**63) + 10 * e + t},
                }
                if t == 2:
                    body["action_taken"] = 1  # the agent asked for help at t = 1 anyway
                assert (await c.post("/v1/should_intervene", json=body)).status_code == 200
            r = await c.post(
                f"/v1/sessions/{sid}/outcome", json={"success": True, "steps": 3, "action_taken": 0}
            )
            assert r.status_code == 200, r.text
        bad = await c.post(
            "/v1/should_intervene",
            json={"session_id": sid, "step": 0, "state": {"features": DOWN, "key": 2**63}},
        )
        bad_action = await c.post(
            "/v1/should_intervene",
            json={"session_id": sid, "step": 0, "state": {"features": DOWN}, "action_taken": 2},
        )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][:3] == ["body", "state", "key"]
    assert bad_action.status_code == 422
    assert bad_action.json()["detail"][0]["loc"] == ["body", "action_taken"]
    recs = records(log)
    assert [r["state_key"] for r in recs[:3]] == [-(2**63), -(2**63) + 1, -(2**63) + 2]
    assert [r["action_taken_previous"] for r in recs[:3]] == [None, None, 1]
    assert records(log, "outcome")[0]["action_taken"] == 0
    out = export_main(ExportConfig(log=log, out=tmp_path / "steps", test_fraction=0.0))
    steps, _ = read_steplog(out)
    assert sorted(set(steps.state_key.tolist()))[:3] == [-(2**63), -(2**63) + 1, -(2**63) + 2]
    assert steps.action.tolist() == [0, 1, 0] * 4  # the reported action, not the answer
    assert steps.behavior_p.tolist() == [0.0, 1.0, 0.0] * 4
    assert steps.cost.tolist() == [0, 1, 0] * 4


async def test_explore_only_service_then_reload_loads_the_helper(
    tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    art = tmp_path / "art"
    async with running_app(artifact=art, allow_no_artifact=True, **store_settings) as (c, _):
        ready = (await c.get("/readyz")).json()
        assert ready["explore_only"] is True and ready["model_version"] == "none"
        model = await c.get("/v1/model")
        assert model.status_code == 503 and "explore-only" in model.json()["detail"]
        helper = await c.post("/v1/sessions", json={"budget": 2})
        assert helper.status_code == 503 and "explore" in helper.json()["detail"]
        stateless = await c.post(
            "/v1/should_intervene",
            json={"step": 0, "state": {"features": UP}, "remaining_budget": 2},
        )
        assert stateless.status_code == 503, stateless.text
        sid = (await c.post("/v1/sessions", json={"budget": 2, "explore": {"p": 1.0}})).json()[
            "session_id"
        ]
        for state in ({"features": [0.5] * 7}, {"text": "a room with a door"}):  # any state
            r = await c.post(
                "/v1/should_intervene", json={"session_id": sid, "step": 0, "state": state}
            )
            assert r.status_code == 200 and r.json()["intervene"], r.text
        write_test_artifact(art, artifact_id="loop-v1")
        r = await c.post("/admin/reload")
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "loop-v1"
        assert (await c.get("/readyz")).json()["explore_only"] is False
        sid = (await c.post("/v1/sessions", json={"budget": 2})).json()["session_id"]
        r = await c.post(
            "/v1/should_intervene", json={"session_id": sid, "step": 0, "state": {"features": UP}}
        )
        assert r.status_code == 200 and r.json()["reason"] == "helper", r.text


async def test_a_missing_artifact_still_refuses_to_start_by_default(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="manifest|artifact|No such"):
        async with running_app(artifact=tmp_path / "missing"):
            pass


async def test_sdk_builds_the_explore_fields() -> None:
    from helpseek_client._calls import decision_call, outcome_call, session_call

    assert session_call(2, None, None, None, None, 0.3).body == {"budget": 2, "explore": {"p": 0.3}}
    assert session_call(2, None, None, None, None, True).body == {"budget": 2, "explore": True}
    assert "explore" not in (session_call(2, None, None, None, None).body or {})
    body = decision_call("s", 3, [1.0], None, None, None, "r", None, -5, 1).body or {}
    assert body["state"] == {"features": [1.0], "key": -5} and body["action_taken"] == 1
    assert outcome_call("s", True, 4, 0).body == {"success": True, "steps": 4, "action_taken": 0}
