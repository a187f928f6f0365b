"""Service benchmark (`make bench-service`): decisions/s and latency of /v1/should_intervene.

Starts the service (`python -m service`, 2 uvicorn workers, Redis store) and, as the baseline,
a minimal FastAPI app (2 workers) whose one endpoint runs one Redis Lua decrement. Both are
loaded by the same async client (httpx, one keep-alive connection per concurrent client) on
loopback for the same time; prints throughput, p50 and p99 of both and their ratio.

    python bench/service.py [--quick] [--json] [--connections 16] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script, this file's directory would shadow the `service` package: use the repo root.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

ROUNDS = 3
REDIS_URL = os.environ.get("HELPSEEK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DECREMENT = """
local v = redis.call('DECR', KEYS[1])
if v < 0 then redis.call('INCR', KEYS[1]) return -1 end
return v
"""


BASELINE_SOURCE = f"""
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel
from redis.asyncio import Redis

DECREMENT = {DECREMENT!r}
state = {{}}


class Body(BaseModel):
    session_id: str


@asynccontextmanager
async def lifespan(app):
    r = Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=0.25, decode_responses=True)
    state["script"] = r.register_script(DECREMENT)
    yield
    await r.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/decrement")
async def decrement(body: Body) -> dict:
    left = await state["script"](keys=[os.environ["BENCH_PREFIX"] + body.session_id])
    return {{"remaining": int(left)}}
"""


def write_bench_artifact(directory: Path, dim: int = 16, hidden: int = 64) -> Path:
    """A features artifact with a random 2-hidden-layer MLP (the realistic helper size)."""
    from helpseek_core.artifact import write_artifact
    from helpseek_core.helper import HELPER_FILE, MLP, FeatureStats

    rng = np.random.default_rng(0)
    stats = FeatureStats.fit(rng.normal(size=(2048, dim)))
    sizes = [dim + 3, hidden, hidden, 1]
    ws = tuple(
        (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        for a, b in zip(sizes, sizes[1:], strict=False)
    )
    bs = tuple(np.zeros(b, np.float32) for b in sizes[1:])
    manifest = {
        "artifact_id": "bench-v1", "created_at": "2026-11-25T00:00:00Z", "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 10, "horizon": 100, "k": 1, "cost": 1,
    }  # fmt: skip
    return write_artifact(
        directory, manifest, {HELPER_FILE: {**MLP(ws, bs).to_arrays(), **stats.to_arrays()}}
    )


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str], env: dict[str, str], port: int, ready_path: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=0.5).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{cmd} did not become ready")


async def load(
    port: int, path: str, bodies: list[dict], connections: int, seconds: float, pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0

    async def client(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            body = bodies[i % len(bodies)]
            stepped = "state" in body
            n = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await c.post(
                    path, json={**body, "step": n % 90} if stepped else body
                )
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                n += 1

    # warm-up, then measure
    stop_at = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(client(i) for i in range(connections)))
    latencies.clear()
    cpu0 = tree_cpu_s(pid)
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(*(client(i) for i in range(connections)))
    elapsed = time.perf_counter() - t0
    cpu = tree_cpu_s(pid) - cpu0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(lat), "errors": errors, "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "server_cpu_us_per_request": cpu / max(len(lat), 1) * 1e6,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 s per target instead of 9")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 9.0)
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, object] = {
        "connections": args.connections,
        "seconds": seconds,
        "workers": args.workers,
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            art = write_bench_artifact(Path(tmp) / "artifact")
            base_env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("HELPSEEK_") and k != "PROMETHEUS_MULTIPROC_DIR"
            }
            # --- baseline: FastAPI + one Lua decrement
            bport = free_port()
            benv = {**base_env, "BENCH_REDIS_URL": REDIS_URL, "BENCH_PREFIX": prefix}
            (Path(tmp) / "helpseek_bench_baseline.py").write_text(BASELINE_SOURCE)
            cmd = [sys.executable, "-m", "uvicorn", "helpseek_bench_baseline:app", "--app-dir", tmp,
                   "--host", "127.0.0.1", "--port", str(bport), "--workers", str(args.workers), "--log-level", "warning"]  # fmt: skip
            procs.append(start(cmd, benv, bport, "/docs"))
            keys = [f"b{i}" for i in range(args.connections)]
            for k in keys:
                r.set(prefix + k, 10**9)
            # --- the service: 2 workers, Redis store
            sport = free_port()
            senv = {**base_env, "HELPSEEK_PORT": str(sport), "HELPSEEK_ARTIFACT": str(art), "HELPSEEK_REDIS_URL": REDIS_URL,
                    "HELPSEEK_REDIS_KEY_PREFIX": prefix, "HELPSEEK_WORKERS": str(args.workers), "HELPSEEK_LOG_LEVEL": "warning",
                    "PROMETHEUS_MULTIPROC_DIR": str(Path(tmp) / "prom")}  # fmt: skip
            procs.append(start([sys.executable, "-m", "service"], senv, sport, "/readyz"))
            rng = np.random.default_rng(1)
            bodies = []
            for _ in range(args.connections):
                sid = httpx.post(
                    f"http://127.0.0.1:{sport}/v1/sessions", json={"budget": 10_000}
                ).json()["session_id"]
                bodies.append(
                    {
                        "session_id": sid,
                        "step": 0,
                        "state": {"features": rng.normal(size=16).round(4).tolist()},
                    }
                )
            # alternate rounds so background load on a shared machine hits both alike
            rounds: dict[str, list[dict[str, float]]] = {"baseline": [], "service": []}
            for _ in range(ROUNDS):
                rounds["baseline"].append(
                    asyncio.run(
                        load(
                            bport,
                            "/decrement",
                            [{"session_id": k} for k in keys],
                            args.connections,
                            seconds / ROUNDS,
                            procs[0].pid,
                        )
                    )
                )
                rounds["service"].append(
                    asyncio.run(
                        load(
                            sport,
                            "/v1/should_intervene",
                            bodies,
                            args.connections,
                            seconds / ROUNDS,
                            procs[1].pid,
                        )
                    )
                )
            for name, rs in rounds.items():
                results[name] = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    svc, base = results["service"], results["baseline"]  # type: ignore[assignment]
    results["throughput_ratio"] = svc["rps"] / base["rps"]  # type: ignore[index]
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{args.connections} connections, {seconds:.0f} s each in {ROUNDS} alternating rounds (medians), {args.workers} workers, Redis {REDIS_URL}"
    )
    for name in ("baseline", "service"):
        m = results[name]
        print(
            f"  {name:9s} {m['rps']:8.0f} req/s   server CPU {m['server_cpu_us_per_request']:5.0f} us/req   p50 {m['p50_ms']:6.2f} ms   p99 {m['p99_ms']:6.2f} ms   errors {m['errors']}"
        )  # type: ignore[index]
    print(f"  ratio service/baseline throughput: {results['throughput_ratio']:.2f}x")


if __name__ == "__main__":
    main()
