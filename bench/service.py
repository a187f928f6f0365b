"""Service benchmark (`make bench-service`): decisions/s and latency of /v1/should_intervene.

Starts the service (`python -m service`, 2 uvicorn workers, Redis store) and, as the baseline,
a minimal FastAPI app (2 workers) whose one endpoint runs one Redis Lua decrement. Both are
loaded by the same generator on loopback for the same time: `wrk` (default when on PATH; one
thread, scripts in bench/wrk/) or an httpx async client (one keep-alive connection per
concurrent client; it costs the shared cores more CPU per request than wrk). Prints
throughput, p50 and p99 of both, server and generator CPU per request and the ratio.

    python bench/service.py [--quick] [--json] [--connections 16] [--seconds 9]
        [--generator wrk|httpx] [--wrk-threads 1] [--request-ids]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's directory would shadow the `service` package: use the repo root.
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402

ROUNDS = 3
WRK_DIR = Path(__file__).resolve().parent / "wrk"
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
    from helpseek_core.helper import HELPER_FILE, FeatureStats
    from helpseek_core.mlp import MLP

    rng = np.random.default_rng(0)
    stats = FeatureStats.fit(rng.normal(size=(2048, dim)))
    sizes = [dim + 3, hidden, hidden, 1]
    ws = tuple(
        (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        for a, b in zip(sizes, sizes[1:], strict=False)
    )
    bs = tuple(np.zeros(b, np.float32) for b in sizes[1:])
    manifest = {
        "artifact_id": "bench-v1",
        "created_at": "2026-11-25T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 10,
        "horizon": 100,
        "k": 1,
        "cost": 1,
    }
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


@dataclass(frozen=True)
class Target:
    """One server under load: where it listens, its master pid and the bodies to send."""

    name: str  # "baseline" | "service"
    port: int
    path: str
    pid: int
    bodies: list[dict]  # one per connection (httpx); service bodies get "step" per request
    body_file: Path  # the same bodies for wrk's Lua scripts (service: prefixes ending "step":)


def measured(requests: int, cpu: float, gen: float, red: float) -> dict[str, float]:
    """Per-request CPU figures from CPU-second deltas (server tree, generator, Redis)."""
    n = max(requests, 1)
    return {
        "server_cpu_us_per_request": cpu / n * 1e6,
        "generator_cpu_us_per_request": gen / n * 1e6,
        "redis_cpu_us_per_request": red / n * 1e6,
    }


async def load(t: Target, connections: int, seconds: float, rid_tag: str) -> dict[str, float]:
    """Closed-loop httpx load: one keep-alive client per connection, its own body each.

    Stepped (service) bodies get step = n % 90; with `rid_tag`, request_id "<tag>-<i>-<n>".
    """
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0
    split: list[int] = []

    async def client(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{t.port}", timeout=5) as c:
            body = t.bodies[i % len(t.bodies)]
            stepped = "state" in body
            n = 0
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                extra = {"request_id": f"{rid_tag}-{i}-{n}"} if rid_tag else {}
                r = await c.post(
                    t.path, json={**body, "step": n % 90, **extra} if stepped else body
                )
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                n += 1

    async def sample() -> None:
        await asyncio.sleep(min(0.3, seconds / 2))
        split.extend(connection_split(t.port, t.pid))

    # warm-up, then measure
    stop_at = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(client(i) for i in range(connections)))
    latencies.clear()
    rid_tag = rid_tag and rid_tag + "m"  # measured requests must not replay warm-up ids
    cpu0, gen0, red0 = tree_cpu_s(t.pid), time.process_time(), redis_cpu_s()
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    await asyncio.gather(sample(), *(client(i) for i in range(connections)))
    elapsed = time.perf_counter() - t0
    cpu, gen, red = tree_cpu_s(t.pid) - cpu0, time.process_time() - gen0, redis_cpu_s() - red0
    lat = np.array(latencies) * 1000
    return {
        "requests": len(lat),
        "errors": errors,
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        **measured(len(lat), cpu, gen, red),
        "busiest_share": busiest_share(split),
    }


def run_wrk(t: Target, args: list[str], connections: int, seconds: int, threads: int) -> dict:
    """One wrk run: the JSON line that bench/wrk/<name>.lua's done() prints (latencies in us)."""
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_DIR / f"{t.name}.lua"),
        f"http://127.0.0.1:{t.port}{t.path}",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    split = connection_split(t.port, t.pid)
    stdout, stderr = proc.communicate(timeout=seconds + 30)
    found = re.search(r"^WRK_RESULT (\{.*\})$", stdout, re.M)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {stdout[-500:]} {stderr[-500:]}")
    return {**json.loads(found.group(1)), "busiest_share": busiest_share(split)}


def load_wrk(
    t: Target, connections: int, seconds: float, threads: int, rid_tag: str
) -> dict[str, float]:
    """Closed-loop wrk load: a 1 s warm-up run, then the measured run; same keys as `load`."""
    fixed = [str(t.body_file), str(threads)]
    run_wrk(t, [*fixed, *([rid_tag + "w"] if rid_tag else [])], connections, 1, threads)
    cpu0, gen0, red0 = tree_cpu_s(t.pid), children_cpu_s(), redis_cpu_s()
    tags = [rid_tag + "m"] if rid_tag else []
    w = run_wrk(t, [*fixed, *tags], connections, max(1, round(seconds)), threads)
    cpu, gen, red = tree_cpu_s(t.pid) - cpu0, children_cpu_s() - gen0, redis_cpu_s() - red0
    return {
        "requests": w["requests"],
        "errors": w["non2xx"] + w["socket_errors"],
        "rps": w["requests"] / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        **measured(w["requests"], cpu, gen, red),
        "busiest_share": w["busiest_share"],
    }


def connection_split(port: int, master: int) -> list[int]:
    """Established connections to `port` held by each worker of `master`, most first.

    Uvicorn's workers share one listening socket and whichever wakes first accepts, so a burst of
    16 keep-alive connections often lands 14/2 or 16/0: one worker (one core) serves nearly all.
    """
    est: set[str] = set()
    listening: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) == port:
            (listening if f[3] == "0A" else est if f[3] == "01" else set()).add(f[9])
    counts = []
    for child in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            fds = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{child}/fd").iterdir()}
        except OSError:
            continue
        if fds & listening:  # a worker, not multiprocessing's resource tracker
            counts.append(len(fds & est))
    return sorted(counts, reverse=True)


def busiest_share(split: list[int]) -> float:
    """Share of the connections held by the busiest worker (0.5 = even over 2 workers)."""
    return split[0] / sum(split) if split and sum(split) else float("nan")


def redis_cpu_s() -> float:
    """CPU seconds Redis has used (INFO cpu; the whole server, shared with anyone else)."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        info = r.info("cpu")
    finally:
        r.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (the wrk runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the servers, killing any that outlive 10 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def main() -> None:
    """Run the benchmark and print the table (or one JSON object with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 s per target instead of 9")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--generator",
        choices=("wrk", "httpx"),
        default=None,
        help="load generator (default: wrk when on PATH, else httpx)",
    )
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument(
        "--request-ids",
        action="store_true",
        help="a distinct request_id on every service request (idempotency records)",
    )
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 9.0)
    generator = args.generator or ("wrk" if shutil.which("wrk") else "httpx")
    if not 1 <= args.wrk_threads <= args.connections:
        raise SystemExit("--wrk-threads must be between 1 and --connections")
    if generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not on PATH: run scripts/ensure-wrk.sh or use --generator httpx")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(REDIS_URL)
    procs: list[subprocess.Popen[bytes]] = []
    rounds: dict[str, list[dict[str, float]]] = {"baseline": [], "service": []}
    results: dict[str, object] = {
        "connections": args.connections,
        "seconds": seconds,
        "workers": args.workers,
        "generator": generator,
        "wrk_threads": args.wrk_threads if generator == "wrk" else None,
        "request_ids": args.request_ids,
        "load_average_before": os.getloadavg()[0],
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
            cmd = [
                sys.executable,
                "-m",
                "uvicorn",
                "helpseek_bench_baseline:app",
                "--app-dir",
                tmp,
                "--host",
                "127.0.0.1",
                "--port",
                str(bport),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ]
            procs.append(start(cmd, benv, bport, "/docs"))
            keys = [f"b{i}" for i in range(args.connections)]
            for k in keys:
                r.set(prefix + k, 10**9)
            # --- the service: 2 workers, Redis store
            sport = free_port()
            senv = {
                **base_env,
                "HELPSEEK_PORT": str(sport),
                "HELPSEEK_ARTIFACT": str(art),
                "HELPSEEK_REDIS_URL": REDIS_URL,
                "HELPSEEK_REDIS_KEY_PREFIX": prefix,
                "HELPSEEK_WORKERS": str(args.workers),
                "HELPSEEK_LOG_LEVEL": "warning",
                "PROMETHEUS_MULTIPROC_DIR": str(Path(tmp) / "prom"),
            }
            procs.append(start([sys.executable, "-m", "service"], senv, sport, "/readyz"))
            rng = np.random.default_rng(1)
            bodies = []
            for _ in range(args.connections):
                sid = httpx.post(
                    f"http://127.0.0.1:{sport}/v1/sessions", json={"budget": 10_000}
                ).json()["session_id"]
                feats = rng.normal(size=16).round(4).tolist()
                bodies.append({"session_id": sid, "step": 0, "state": {"features": feats}})
            base_file, svc_file = Path(tmp) / "baseline.txt", Path(tmp) / "service.txt"
            base_file.write_text("".join(f'{{"session_id": "{k}"}}\n' for k in keys))
            svc_file.write_text(
                "".join(
                    json.dumps({k: v for k, v in b.items() if k != "step"})[:-1] + ', "step":\n'
                    for b in bodies
                )
            )
            targets = [
                Target(
                    "baseline",
                    bport,
                    "/decrement",
                    procs[0].pid,
                    [{"session_id": k} for k in keys],
                    base_file,
                ),
                Target("service", sport, "/v1/should_intervene", procs[1].pid, bodies, svc_file),
            ]
            # alternate rounds so background load on a shared machine hits both alike
            for rnd in range(ROUNDS):
                for t in targets:
                    tag = f"r{rnd}" if args.request_ids and t.name == "service" else ""
                    each = seconds / ROUNDS
                    rounds[t.name].append(
                        asyncio.run(load(t, args.connections, each, tag))
                        if generator == "httpx"
                        else load_wrk(t, args.connections, each, args.wrk_threads, tag)
                    )
    finally:
        stop(procs)
        if keys := list(r.scan_iter(match=prefix + "*", count=1000)):
            r.delete(*keys)
    stats = {
        name: {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
        for name, rs in rounds.items()
    }
    for name, rs in rounds.items():
        stats[name]["errors"] = float(sum(x["errors"] for x in rs))
    ratio = stats["service"]["rps"] / stats["baseline"]["rps"]
    per_round = {
        n: [{k: x[k] for k in ("rps", "p99_ms", "busiest_share")} for x in rs]
        for n, rs in rounds.items()
    }
    results |= {
        **stats,
        "throughput_ratio": ratio,
        "rounds": per_round,
        "load_average_after": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(results))
        return
    gen = generator + (f" ({args.wrk_threads} thread)" if generator == "wrk" else "")
    print(
        f"{args.connections} connections, {seconds:.0f} s each in {ROUNDS} alternating rounds (medians), "
        f"{args.workers} workers, generator {gen}, Redis {REDIS_URL}, load average "
        f"{results['load_average_before']:.2f} before / {results['load_average_after']:.2f} after"
    )
    for name, m in stats.items():
        print(
            f"  {name:9s} {m['rps']:6.0f} req/s   CPU us/req: server {m['server_cpu_us_per_request']:4.0f}   "
            f"generator {m['generator_cpu_us_per_request']:4.0f}   Redis {m['redis_cpu_us_per_request']:3.0f}   "
            f"p50 {m['p50_ms']:6.2f} ms   p99 {m['p99_ms']:6.2f} ms   errors {m['errors']:.0f}"
        )
        each = ", ".join(
            f"{x['rps']:.0f} req/s p99 {x['p99_ms']:.1f} ms busiest worker {x['busiest_share']:.0%}"
            for x in rounds[name]
        )
        print(f"    rounds: {each}")
    print(f"  ratio service/baseline throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
