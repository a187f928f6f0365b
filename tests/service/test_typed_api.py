"""A typed model (two intervention types) served over HTTP, on both stores.

The expected answers follow from ``write_typed_test_artifact``'s documented linear logits
(b while b is affordable, then a, then proceed on UP), not from the service's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpseek_core.artifact import load_artifact
from helpseek_core.typed_helper import TypedHelper
from service.typed_scorer import TypedScorer
from tests.conftest import write_test_artifact, write_typed_test_artifact
from tests.service.conftest import running_app

UP = [1.0, 0.0, 0.0, 0.0]
DOWN = [-1.0, 0.0, 0.0, 0.0]


def sample(app: Any, name: str, **labels: str) -> float:
    return app.state.svc.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.asyncio
async def test_model_lists_types_and_sessions_hold_a_budget_per_type(
    typed_artifact_dir: Path, store_settings: dict[str, Any]
) -> None:
    async with running_app(artifact=typed_artifact_dir, **store_settings) as (c, _):
        m = (await c.get("/v1/model")).json()
        assert m["kind"] == "typed" and m["types"] == [
            {"name": "a", "k": 1, "cost": 1, "cmax": 3},
            {"name": "b", "k": 3, "cost": 1, "cmax": 1},
        ]
        r = await c.post("/v1/sessions", json={"budgets": {"a": 3, "b": 1}, "horizon": 25})
        assert r.status_code == 201, r.text
        assert r.json()["budgets"] == {"a": 3, "b": 1} and r.json()["budget"] == 4
        st = (await c.get(f"/v1/sessions/{r.json()['session_id']}")).json()
        assert st["budgets"] == {"a": 3, "b": 1} and st["remaining_budgets"] == {"a": 3, "b": 1}


@pytest.mark.asyncio
async def test_session_budget_errors_name_the_field(typed_artifact_dir: Path) -> None:
    async with running_app(artifact=typed_artifact_dir) as (c, _):
        cases: list[tuple[Any, list[Any], str]] = [
            ({"budgets": {"a": 3, "z": 1}}, ["body", "budgets", "z"], "unknown intervention type"),
            ({"budgets": {"a": 3}}, ["body", "budgets"], "missing the budget of b"),
            ({"budget": 3}, ["body", "budget"], "this model has 2 intervention types (a, b)"),
            ({"budget": 3, "budgets": {"a": 1, "b": 1}}, ["body", "budget"], "not both"),
            ({}, ["body", "budgets"], "one budget per type"),
            ({"budgets": {"a": -1, "b": 1}}, ["body", "budgets", "a"], ""),
            ({"budgets": {"a": True, "b": 1}}, ["body", "budgets", "a"], ""),
            ({"budgets": {"a": 2.5, "b": 1}}, ["body", "budgets", "a"], ""),
            ({"budgets": {}}, ["body", "budgets"], ""),
        ]
        for body, loc, msg in cases:
            r = await c.post("/v1/sessions", json=body)
            assert r.status_code == 422, (body, r.text)
            d = r.json()["detail"][0]
            assert d["loc"] == loc and msg in d["msg"], (body, d)
        for raw in (b'{"budgets": {"a": NaN, "b": 1}}', b'{"budgets": {"a": 1, "b": 1e309}}'):
            r = await c.post(
                "/v1/sessions", content=raw, headers={"content-type": "application/json"}
            )
            assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == [
                "body",
                "budgets",
                "a" if b"NaN" in raw else "b",
            ], r.text
        ok = await c.post("/v1/sessions", json={"budgets": {"b": 1.0, "a": 3}})
        assert ok.status_code == 201 and ok.json()["budgets"] == {"a": 3, "b": 1}


@pytest.mark.asyncio
async def test_charges_the_chosen_type_exhausting_one_leaves_the_other(
    typed_artifact_dir: Path, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "d.jsonl"
    async with running_app(
        artifact=typed_artifact_dir, decision_log=str(log), **store_settings
    ) as (c, app):
        sid = (await c.post("/v1/sessions", json={"budgets": {"a": 3, "b": 1}})).json()[
            "session_id"
        ]
        answers, raws = [], []
        for i in range(6):
            body = {"session_id": sid, "request_id": f"r{i}", "step": i, "state": {"features": UP}}
            r = await c.post("/v1/should_intervene", json=body)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            raws.append(r.content)
        got = [
            (a["intervene"], a["type"], a["remaining_budgets"], a["remaining_budget"], a["reason"])
            for a in answers
        ]
        assert got == [
            (True, "b", {"a": 3, "b": 0}, 3, "helper"),
            (True, "a", {"a": 2, "b": 0}, 2, "helper"),
            (True, "a", {"a": 1, "b": 0}, 1, "helper"),
            (True, "a", {"a": 0, "b": 0}, 0, "helper"),
            (False, None, {"a": 0, "b": 0}, 0, "budget_exhausted"),
            (False, None, {"a": 0, "b": 0}, 0, "budget_exhausted"),
        ]
        # a retry replays the stored answer byte for byte and charges nothing
        body = {"session_id": sid, "request_id": "r0", "step": 0, "state": {"features": UP}}
        first = await c.post("/v1/should_intervene", json={**body, "request_id": "r1"})
        again = await c.post("/v1/should_intervene", json={**body, "request_id": "r1", "step": 1})
        assert again.content == raws[1] and first.status_code == 422
        st = (await c.get(f"/v1/sessions/{sid}")).json()
        assert st["remaining_budgets"] == {"a": 0, "b": 0}
        for extra in ({"remaining_budget": 1}, {"remaining_budgets": {"a": 1, "b": 1}}):
            r = await c.post("/v1/should_intervene", json={**body, "request_id": "z", **extra})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", *extra]
        # DOWN proceeds; on a fresh session with many steps left the mean state proceeds too
        sid2 = (await c.post("/v1/sessions", json={"budgets": {"a": 1, "b": 1}})).json()[
            "session_id"
        ]
        d = (
            await c.post(
                "/v1/should_intervene",
                json={"session_id": sid2, "step": 0, "state": {"features": DOWN}},
            )
        ).json()
        assert (d["intervene"], d["type"], d["remaining_budgets"]) == (
            False,
            None,
            {"a": 1, "b": 1},
        )
        assert (
            sample(app, "helpseek_decisions_by_type_total", type="b", model_version="typed-v1") == 1
        )
        assert (
            sample(app, "helpseek_decisions_by_type_total", type="a", model_version="typed-v1") == 3
        )
        assert (
            sample(app, "helpseek_decisions_by_type_total", type="none", model_version="typed-v1")
            == 3
        )
        assert sample(app, "helpseek_interventions_granted_total", model_version="typed-v1") == 4
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    decisions = [r for r in recs if r["record"] == "decision"]
    assert [(r["action"], r["intervention_type"], r["type"], r["cost"]) for r in decisions[:6]] == [
        (1, 1, "b", 1),
        (1, 0, "a", 1),
        (1, 0, "a", 1),
        (1, 0, "a", 1),
        (0, 0, None, 0),
        (0, 0, None, 0),
    ]
    assert decisions[0]["remaining_budgets_before"] == {"a": 3, "b": 1}
    assert decisions[0]["remaining_budgets_after"] == {"a": 3, "b": 0}


@pytest.mark.asyncio
async def test_stateless_typed_decisions_and_their_errors(typed_artifact_dir: Path) -> None:
    async with running_app(artifact=typed_artifact_dir) as (c, _):
        q: dict[str, Any] = {"step": 0, "state": {"features": UP}}
        r = (
            await c.post("/v1/should_intervene", json={**q, "remaining_budgets": {"a": 2, "b": 0}})
        ).json()
        assert (r["intervene"], r["type"], r["remaining_budgets"]) == (True, "a", {"a": 1, "b": 0})
        mean = TypedScorer(load_artifact(typed_artifact_dir)).helper.stats.mean.tolist()
        for left, want in ((25, None), (2, "b")):
            body = {
                "step": 0,
                "steps_left": left,
                "state": {"features": mean},
                "remaining_budgets": {"a": 3, "b": 1},
            }
            assert (await c.post("/v1/should_intervene", json=body)).json()["type"] == want
        for body, loc in (
            (q, ["body", "remaining_budgets"]),
            ({**q, "remaining_budget": 2}, ["body", "remaining_budget"]),
            ({**q, "remaining_budgets": {"a": 1}}, ["body", "remaining_budgets"]),
            ({**q, "remaining_budgets": {"a": 1, "b": -1}}, ["body", "remaining_budgets", "b"]),
        ):
            r = await c.post("/v1/should_intervene", json=body)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (body, r.text)


@pytest.mark.asyncio
async def test_one_type_models_refuse_typed_fields_and_sessions_follow_their_types(
    tmp_path: Path,
) -> None:
    plain = write_test_artifact(tmp_path / "plain")
    async with running_app(artifact=plain) as (c, app):
        r = await c.post("/v1/sessions", json={"budgets": {"a": 1}})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "budgets"]
        r = await c.post("/v1/sessions", json={})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "budget"]
        q = {"step": 0, "state": {"features": UP}, "remaining_budgets": {"a": 1}}
        r = await c.post("/v1/should_intervene", json=q)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == [
            "body",
            "remaining_budgets",
        ]
        ok = (
            await c.post(
                "/v1/should_intervene", json={**q, "remaining_budgets": None, "remaining_budget": 1}
            )
        ).json()
        assert ok["type"] is None and ok["remaining_budgets"] is None and ok["intervene"] is True
        plain_sid = (await c.post("/v1/sessions", json={"budget": 2})).json()["session_id"]
        # reload to a typed model: the one-type session is refused by name, not charged
        write_typed_test_artifact(plain, artifact_id="typed-v2")
        assert (await c.post("/admin/reload")).status_code == 200
        body = {"session_id": plain_sid, "step": 0, "state": {"features": UP}}
        r = await c.post("/v1/should_intervene", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "session_id"]
        assert "one untyped budget" in r.json()["detail"][0]["msg"]
        typed_sid = (await c.post("/v1/sessions", json={"budgets": {"a": 1, "b": 1}})).json()[
            "session_id"
        ]
        write_test_artifact(plain, artifact_id="plain-v3")
        assert (await c.post("/admin/reload")).status_code == 200
        r = await c.post("/v1/should_intervene", json={**body, "session_id": typed_sid})
        assert r.status_code == 422 and "holds budgets for a, b" in r.json()["detail"][0]["msg"]
        st = (await c.get(f"/v1/sessions/{typed_sid}")).json()
        assert st["remaining_budgets"] == {"a": 1, "b": 1}
        assert (await c.get(f"/v1/sessions/{plain_sid}")).json()["remaining_budget"] == 2


def test_scorer_cells_equal_the_core_helpers_decide(typed_artifact_dir: Path) -> None:
    """The box scored in one pass gives TypedHelper.decide's action at every cell."""
    art = load_artifact(typed_artifact_dir)
    scorer, helper = TypedScorer(art), TypedHelper.from_artifact(art)
    rng = np.random.default_rng(1)
    cells = np.array([(a, b) for a in range(6) for b in range(3)])
    for _ in range(20):
        f = rng.normal(size=4)
        left = int(rng.integers(0, 26))
        s = scorer.score_typed(f, cells, left)
        want = [helper.decide(f, c, left).action for c in cells]
        assert s.actions.tolist() == want
        assert s.budget_clipped.tolist() == [bool(a > 3 or b > 1) for a, b in cells]


@pytest.mark.asyncio
async def test_decision_log_type_reaches_the_step_log(
    typed_artifact_dir: Path, tmp_path: Path
) -> None:
    """Typed decision records -> training.export_log -> intervention_type = index in the types."""
    from training.export_log import decisions_to_steplog, read_jsonl

    log = tmp_path / "d.jsonl"
    async with running_app(artifact=typed_artifact_dir, decision_log=str(log)) as (c, _):
        sid = (
            await c.post("/v1/sessions", json={"budgets": {"a": 1, "b": 1}, "horizon": 25})
        ).json()["session_id"]
        for t, f in enumerate((UP, UP, DOWN, UP)):
            await c.post(
                "/v1/should_intervene",
                json={"session_id": sid, "step": t, "state": {"features": f}},
            )
        await c.post(f"/v1/sessions/{sid}/outcome", json={"success": True, "steps": 5})
    steplog, _ = decisions_to_steplog(read_jsonl(log))
    assert steplog.action.tolist() == [1, 1, 0, 0]
    assert steplog.intervention_type.tolist() == [1, 0, 0, 0]  # b, then a
