"""The HTTP edge through create_app (in-process): numbers, the admin role, the served-model
contract (budget range, clipping, encoding of budget and steps left), fast route == plain route.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service import routes
from service.app import create_app
from service.settings import Settings
from tests.conftest import BUDGET_W, LEFT_W, READY_W
from tests.service.conftest import running_app

pytestmark = pytest.mark.asyncio
UP = [1.0, 0.0, 0.0, 0.0]
JSON = {"content-type": "application/json"}
# write_test_artifact's training data, recomputed here (independent of FeatureStats)
TRAIN = np.random.default_rng(0).normal(size=(512, 4))
MID = [float(TRAIN[:, 0].mean()), 0.0, 0.0, 0.0]  # z0 = 0: budget and steps left decide


def strict_json(text: str) -> Any:
    """Parse as strict JSON (NaN / Infinity literals are an error)."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def expected_p(c: int, left: int, gain: float = 4.0, cmax: int = 5, horizon: int = 25) -> float:
    """write_test_artifact's documented logit at z0 = 0 (the reference of the encoding tests)."""
    u = BUDGET_W * min(c, cmax) / cmax + READY_W * (c >= 1) - LEFT_W * left / horizon
    return 1.0 / (1.0 + math.exp(-gain * u))


NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309"]
FIELDS = [  # (url, body with @ where the number goes, loc)
    ("/v1/sessions", b'{"budget": @}', ["body", "budget"]),
    ("/v1/sessions", b'{"budget": 1, "ttl_s": @}', ["body", "ttl_s"]),
    ("/v1/sessions", b'{"budget": 1, "horizon": @}', ["body", "horizon"]),
    ("/v1/sessions", b'{"budget": 1, "metadata": {"a": @}}', ["body", "metadata", "a"]),
    (
        "/v1/should_intervene",
        b'{"step": 0, "state": {"features": [@, 0, 0, 0]}, "remaining_budget": 1}',
        ["body", "state", "features", 0],
    ),
    (
        "/v1/should_intervene",
        b'{"step": @, "state": {"features": [1, 0, 0, 0]}, "remaining_budget": 1}',
        ["body", "step"],
    ),
    (
        "/v1/should_intervene",
        b'{"step": 0, "state": {"features": [1, 0, 0, 0]}, "remaining_budget": @}',
        ["body", "remaining_budget"],
    ),
    (
        "/v1/should_intervene",
        b'{"step": 0, "state": {"features": [1, 0, 0, 0]}, "remaining_budget": 1, "steps_left": @}',
        ["body", "steps_left"],
    ),
    ("/v1/sessions/abc/outcome", b'{"success": true, "steps": @}', ["body", "steps"]),
]


@pytest.mark.parametrize("url,template,loc", FIELDS)
async def test_non_finite_numbers_are_a_422_naming_the_field(
    artifact_dir: Path, url: str, template: bytes, loc: list[Any]
) -> None:
    """Issue 13 row 2: NaN / Infinity / 1e309 anywhere -> 422 naming the field, a JSON body."""
    async with running_app(artifact=artifact_dir) as (c, _):
        for value in NON_FINITE:
            r = await c.post(url, content=template.replace(b"@", value), headers=JSON)
            assert r.status_code == 422, (value, r.status_code, r.text)
            detail = strict_json(r.text)["detail"]
            assert any(d["loc"][: len(loc)] == loc for d in detail), (value, detail)


async def test_non_numbers_are_not_numbers_and_integral_floats_are_integers(
    artifact_dir: Path,
) -> None:
    """Issue 13 row 12: true / "0.1" are not features; 3.0 is an integer (JSON Schema)."""
    async with running_app(artifact=artifact_dir) as (c, _):
        for bad in (True, "0.1", None):
            body = {"step": 0, "state": {"features": [bad, 0, 0, 0]}, "remaining_budget": 1}
            r = await c.post("/v1/should_intervene", json=body)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"][0]["loc"][:4] == ["body", "state", "features", 0]
        r = await c.post("/v1/sessions", json={"budget": 3.0, "ttl_s": 60.0, "horizon": 25.0})
        assert r.status_code == 201 and r.json()["budget"] == 3, r.text
        for bad in (2.5, "3", True):
            r = await c.post("/v1/sessions", json={"budget": bad})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "budget"]
        body = {"step": 3.0, "state": {"features": UP}, "remaining_budget": 1.0}
        r = await c.post("/v1/should_intervene", json=body)
        assert r.status_code == 200 and r.json()["intervene"] is True, r.text


@pytest.mark.parametrize("big", [1e308, -1e308, 3.5e38])
async def test_huge_finite_features_answer_finite_numbers(artifact_dir: Path, big: float) -> None:
    """Issue 13 row 3: never ``null`` in a number field of a 200."""
    async with running_app(artifact=artifact_dir) as (c, _):
        body = {"step": 0, "state": {"features": [big] * 4}, "remaining_budget": 1}
        r = await c.post("/v1/should_intervene", json=body)
        assert r.status_code == 200, r.text
        answer = strict_json(r.text)
        assert isinstance(answer["probability"], float) and 0 <= answer["probability"] <= 1
        assert isinstance(answer["novelty_score"], float) and math.isfinite(answer["novelty_score"])
        assert answer["novel"] is True


async def test_openapi_declares_400_and_a_valid_example(artifact_dir: Path) -> None:
    """Issue 13 row 12: the 400 for an unparsable body is declared; the decision example is
    accepted by the served model; no CDN-hosted docs pages."""
    async with running_app(artifact=artifact_dir) as (c, _):
        spec = (await c.get("/openapi.json")).json()
        for path in ("/v1/should_intervene", "/v1/sessions", "/v1/sessions/{session_id}/outcome"):
            assert "400" in spec["paths"][path]["post"]["responses"], path
        text = json.dumps(spec)  # JSON Schema keywords, not pydantic's constraint names
        assert '"minimum"' in text and '"ge"' not in text and '"le"' not in text
        state = spec["components"]["schemas"]["State"]  # the served model's feature length
        assert (
            state["properties"]["features"]["minItems"]
            == 4
            == state["properties"]["features"]["maxItems"]
        )
        r = await c.post("/v1/sessions", content=b"[" * 30000 + b"]" * 30000, headers=JSON)
        assert r.status_code == 400
        examples = spec["components"]["schemas"]["DecisionRequest"]["examples"]
        sid = (await c.post("/v1/sessions", json={"budget": 2})).json()["session_id"]
        for ex in examples:
            if "session_id" in ex:
                ex = {**ex, "session_id": sid}
            r = await c.post("/v1/should_intervene", json=ex)
            assert r.status_code == 200, (ex, r.text)
        for page in ("/docs", "/redoc"):
            assert (await c.get(page)).status_code == 404


async def test_answers_follow_budget_and_steps_left_as_encoded(artifact_dir: Path) -> None:
    """Issue 11 item 6: the answers depend on the budget and steps-left inputs exactly as the
    artifact's documented formula says (a wrong encoding of either column fails here)."""
    async with running_app(artifact=artifact_dir) as (c, _):
        flips = set()
        for c_ in range(0, 9):
            for left in (0, 3, 8, 12, 20, 25):
                body = {
                    "step": 0,
                    "state": {"features": MID},
                    "remaining_budget": c_,
                    "steps_left": left,
                }
                r = (await c.post("/v1/should_intervene", json=body)).json()
                p = expected_p(c_, left)
                assert r["probability"] == pytest.approx(p, rel=1e-5), (c_, left, r)
                assert r["intervene"] == (p >= 0.5 and c_ >= 1), (c_, left, r)
                assert r["budget_clipped"] == (c_ > 5)
                flips.add(r["intervene"])
        assert flips == {True, False}  # the grid crosses the decision boundary
        # session mode: steps_left defaults to horizon - step, the budget is the server's
        sid = (await c.post("/v1/sessions", json={"budget": 8, "horizon": 25})).json()
        remaining = 8
        for step in (24, 20, 10, 2, 0):
            body = {"session_id": sid["session_id"], "step": step, "state": {"features": MID}}
            r = (await c.post("/v1/should_intervene", json=body)).json()
            p = expected_p(remaining, 25 - step)
            assert r["probability"] == pytest.approx(p, rel=1e-5), (step, r)
            assert r["intervene"] == (p >= 0.5)
            remaining -= int(r["intervene"])
            assert r["remaining_budget"] == remaining


async def test_budget_above_the_trained_range_is_clipped_and_said(artifact_dir: Path) -> None:
    """Issue 10 item 2: GET /v1/model states the range; a larger budget answers as at cmax."""
    async with running_app(artifact=artifact_dir) as (c, _):
        info = (await c.get("/v1/model")).json()
        assert info["budget_range"] == [1, 5] and info["cmax"] == 5
        answers = []
        for c_ in (5, 6, 10, 10_000):
            body = {"step": 5, "state": {"features": MID}, "remaining_budget": c_}
            answers.append((await c.post("/v1/should_intervene", json=body)).json())
        assert [a["budget_clipped"] for a in answers] == [False, True, True, True]
        assert len({(a["probability"], a["intervene"]) for a in answers}) == 1


async def test_fast_route_and_plain_route_answer_the_same(artifact_dir: Path, monkeypatch) -> None:
    """Issue 11 item 1: the same requests through the fast decision route and through the
    plain FastAPI route (forced by a dependency override) give equal answers, field by field."""
    taken: list[bool] = []
    real = routes._fast_inputs

    def spy(*args: Any) -> Any:
        out = real(*args)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(routes, "_fast_inputs", spy)
    requests = [
        {"step": t, "state": {"features": f}, "remaining_budget": c_, "request_id": f"r{t}-{c_}"}
        for t, f in enumerate([UP, MID, [-1.0, 0, 0, 0], [50.0, 1, 2, 3]])
        for c_ in (0, 1, 3, 7)
    ]

    async def run(plain: bool) -> list[dict[str, Any]]:
        app = create_app(Settings(artifact=artifact_dir))
        if plain:
            app.dependency_overrides[lambda: None] = lambda: None  # any override: plain route
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                sid = (await c.post("/v1/sessions", json={"budget": 3})).json()["session_id"]
                out = [(await c.post("/v1/should_intervene", json=q)).json() for q in requests]
                for t, f in enumerate([UP, MID, UP, UP, MID]):
                    q = {
                        "session_id": sid,
                        "step": t,
                        "state": {"features": f},
                        "request_id": f"s{t}",
                    }
                    out.append((await c.post("/v1/should_intervene", json=q)).json())
                return out

    fast = await run(plain=False)
    assert all(taken) and len(taken) == len(fast)
    taken.clear()
    plain = await run(plain=True)
    assert not any(taken)
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain, strict=True):
        assert a.keys() == b.keys()
        for field in a:
            assert a[field] == b[field], (field, a, b)
