"""The Redis-stream decision log: every decision and the outcome land in the stream, in order.

Same records as the JSONL log (``tests/service/test_api.py``), read back with XRANGE from the
real Redis, and they turn into a step log with ``helpseek export-log``'s reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.service.conftest import running_app

pytestmark = pytest.mark.asyncio

UP = [1.0, 0.0, 0.0, 0.0]
DOWN = [-1.0, 0.0, 0.0, 0.0]


async def test_stream_holds_every_decision_and_the_outcome(
    artifact_dir: Path, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    settings = {
        "artifact": artifact_dir,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "decision_log": "redis-stream",
        "decision_stream": "log",
    }
    async with running_app(**settings) as (c, _):
        sid = (await c.post("/v1/sessions", json={"budget": 1, "horizon": 10})).json()["session_id"]
        answers = []
        for step, state in enumerate([DOWN, UP, UP]):
            r = await c.post(
                "/v1/should_intervene",
                json={"session_id": sid, "step": step, "state": {"features": state}},
            )
            assert r.status_code == 200, r.text
            answers.append(r.json())
        r = await c.post(f"/v1/sessions/{sid}/outcome", json={"success": True, "steps": 3})
        assert r.status_code == 200, r.text
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(redis_prefix + "log")
    records = [json.loads(fields[b"record"]) for _, fields in entries]
    assert [r["record"] for r in records] == ["decision"] * 3 + ["outcome"]
    decisions = records[:3]
    assert [d["t"] for d in decisions] == [0, 1, 2]
    assert [d["action"] for d in decisions] == [int(a["intervene"]) for a in answers] == [0, 1, 0]
    assert all(d["episode_id"] == sid for d in decisions)
    assert [d["reason"] for d in decisions] == ["helper", "helper", "budget_exhausted"]
    # the stream is the same contract as the JSONL file: export-log reads it
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    from training.export_log import ExportConfig
    from training.export_log import main as export_main

    out = export_main(ExportConfig(log=log, out=tmp_path / "steps"))
    assert (Path(out) / "manifest.json").is_file()
