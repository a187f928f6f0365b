"""export-log throughput: the service's decision log -> a Phase I step log, at a million decisions.

    python bench/export_log.py [--decisions 1000000] [--per-session 20]

The records are the real service's: one session is played through ``create_app`` (in process,
JSONL decision log) and its records are the template every synthetic session copies, with its
own session id, state keys and feature values. Timed, in the same run on the same file:

- ``json floor``: ``json.loads`` of every line and nothing else (what any reader pays);
- ``export-log``: ``training.export_log.main`` end to end (parse, group into episodes, split,
  write the Parquet shards and the manifest).

Prints seconds, decisions/s and export-log's time as a multiple of the JSON floor, with the
machine's load before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

# run as a script from bench/: its own service.py must not shadow the service package
sys.path[0] = str(Path(__file__).resolve().parents[1])

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from training.export_log import ExportConfig  # noqa: E402
from training.export_log import main as export_main  # noqa: E402

HERE = Path(__file__).resolve().parent


def _bench_artifact(directory: Path) -> Path:
    spec = importlib.util.spec_from_file_location("bench_service", HERE / "service.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_service"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.write_bench_artifact(directory)


async def _template(artifact: Path, log: Path, per_session: int) -> list[dict]:
    app = create_app(Settings(artifact=artifact, decision_log=str(log)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            sid = (await c.post("/v1/sessions", json={"budget": 3})).json()["session_id"]
            rng = np.random.default_rng(0)
            for step in range(per_session):
                state = {"features": rng.normal(size=16).round(4).tolist()}
                body = {"session_id": sid, "step": step, "state": state}
                assert (await c.post("/v1/should_intervene", json=body)).status_code == 200
            out = {"success": True, "steps": per_session}
            assert (await c.post(f"/v1/sessions/{sid}/outcome", json=out)).status_code == 200
    return [json.loads(line) for line in log.read_text().splitlines()]


def _write(path: Path, template: list[dict], sessions: int) -> int:
    rng = np.random.default_rng(1)
    n = 0
    with path.open("w") as fh:
        for i in range(sessions):
            feats = rng.normal(size=(len(template), 16)).round(4)
            for j, rec in enumerate(template):
                r = dict(rec, episode_id=f"s{i}")
                if r["record"] == "decision":
                    r["features"] = feats[j].tolist()
                    r["state_key"] = int(rng.integers(1 << 40))
                    n += 1
                fh.write(json.dumps(r) + "\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--per-session", type=int, default=20)
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        template = asyncio.run(
            _template(_bench_artifact(tmpd / "art"), tmpd / "one.jsonl", args.per_session)
        )
        sessions = max(1, args.decisions // args.per_session)
        log = tmpd / "decisions.jsonl"
        n = _write(log, template, sessions)
        size = log.stat().st_size
        t0 = time.perf_counter()
        with log.open() as fh:
            for line in fh:
                json.loads(line)
        floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_main(ExportConfig(log=log, out=tmpd / "steps"))
        took = time.perf_counter() - t0
    load1 = os.getloadavg()
    print(f"decisions {n:,} in {sessions:,} sessions, {size / 1e6:.0f} MB of JSONL")
    print(f"json floor  {floor:7.2f} s  {n / floor:12,.0f} decisions/s")
    print(
        f"export-log  {took:7.2f} s  {n / took:12,.0f} decisions/s  ({took / floor:.2f}x the floor)"
    )
    print(f"load {load0[0]:.2f} -> {load1[0]:.2f}")


if __name__ == "__main__":
    main()
