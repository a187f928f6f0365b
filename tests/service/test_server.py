"""The real server: ``python -m service`` under uvicorn, 2 workers on Redis; OpenAPI fuzzing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import free_port

UP = [1.0, 0.0, 0.0, 0.0]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_two_workers_grant_exactly_the_budget(
    serve: Callable[..., str], artifact_dir: Path, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    base = serve(
        free_port(), artifact=artifact_dir, redis_url=redis_url, redis_key_prefix=redis_prefix, workers=2,
        prometheus_multiproc_dir=tmp_path / "prom", decision_log=tmp_path / "d.jsonl",
    )  # fmt: skip

    async def drive() -> tuple[list[httpx.Response], str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as c:
            sid = (await c.post("/v1/sessions", json={"budget": 10})).json()["session_id"]
            body = {"session_id": sid, "step": 1, "state": {"features": UP}}
            rs = await asyncio.gather(
                *(
                    c.post("/v1/should_intervene", json={**body, "request_id": f"r{i}"})
                    for i in range(64)
                )
            )
            retries = await asyncio.gather(
                *(
                    c.post("/v1/should_intervene", json={**body, "request_id": f"r{i}"})
                    for i in range(64)
                )
            )
            assert [r.json() for r in retries] == [r.json() for r in rs]
            status = (await c.get(f"/v1/sessions/{sid}")).json()
            assert status["remaining_budget"] == 0
            return rs, (await c.get("/metrics")).text

    rs, text = asyncio.run(drive())
    assert {r.status_code for r in rs} == {200}
    assert sum(r.json()["intervene"] for r in rs) == 10
    # multiprocess metrics: counts from both workers add up to what was answered
    assert metric(text, "helpseek_decisions_total") == 64
    assert metric(text, "helpseek_interventions_granted_total") == 10
    assert metric(text, "helpseek_sessions_started_total") == 1
    assert metric(text, "helpseek_model_info", model_version="test-v1") == 1
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 64 and all(line.startswith("{") and line.endswith("}") for line in lines)
    assert len(list((tmp_path / "prom").glob("counter_*.db"))) >= 1


def test_openapi_fuzz_finds_no_server_errors(serve: Callable[..., str], artifact_dir: Path) -> None:
    """schemathesis over every operation of the live OpenAPI spec: no 5xx."""
    base = serve(free_port(), artifact=artifact_dir, api_keys="fuzz-key")
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(
            max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: schemathesis.Case) -> None:
            headers = (
                {"X-API-Key": "fuzz-key"} if len(str(case.body)) % 4 else None
            )  # mostly authed
            response = case.call(base_url=base, headers=headers)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            assert response.status_code < 500, (
                response.status_code,
                response.text,
                case.as_curl_command(),
            )

        run()
    assert "POST /v1/should_intervene" in seen and len(seen) >= 9, seen
    assert 422 in seen["POST /v1/should_intervene"] and 201 in seen["POST /v1/sessions"], seen
