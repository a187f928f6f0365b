"""Collection throughput: episodes/s per environment with 1 and 2 worker processes.

    python bench/collect.py [--quick] [--json] [--envs taxi,gotolocal]
    python bench/collect.py --ray-cluster [--envs taxi,doorkey]

Each run is a real ``helpseek collect`` (fork process pool, Parquet shards written) into a
fresh temporary directory; the adapter cache is cleared first so both runs pay the same
set-up. The ratio (2 workers / 1 worker) comes from the same invocation.

``--ray-cluster`` measures ``--backend ray`` on an existing Ray cluster instead: a loopback
cluster of 1 node, then one of 2 nodes (1 CPU each, started with ``ray start --block`` on
free ports and stopped by SIGTERM: no other Ray on the machine is touched), the driver
connecting through ``RAY_ADDRESS``. The timed run includes connecting to the cluster and the
workers' start, as a user's run does; ``doorkey`` is the plug-in example
(examples/doorkey_adapter.py), shipped to the workers by content.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from training import collect
from training.config import CollectConfig

# env -> (train seeds, episodes per seed) for full / quick runs
SIZES = {
    "taxi": ((300, 22), (80, 22)),
    "frozenlake": ((200, 22), (60, 22)),
    "cliffwalking": ((200, 22), (60, 22)),
    "gotolocal": ((24, 22), (8, 22)),
    "pickuploc": ((24, 22), (8, 22)),
    "putnextlocal": ((16, 22), (6, 22)),
    "synth": ((8, 11), (4, 6)),
    "bosslevel": ((6, 8), (2, 6)),
    "doorkey": ((120, 22), (40, 22)),
}
QUICK_ENVS = ("taxi", "frozenlake", "gotolocal", "putnextlocal")
DOORKEY = f"{Path(__file__).resolve().parents[1]}/examples/doorkey_adapter.py:H=30"
RAY_SIZES = {"taxi": (400, 22), "doorkey": (200, 22), "gotolocal": (24, 22)}


def measure(
    env: str, seeds: int, per_seed: int, workers: int, backend: str = "process"
) -> dict[str, float]:
    collect._ADAPTERS.clear()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            env=DOORKEY if env == "doorkey" else env,
            out=Path(tmp),
            train_seeds=tuple(range(seeds)),
            test_seeds=(),
            episodes_per_seed=per_seed,
            workers=workers,
            progress=False,
            backend=backend,  # type: ignore[arg-type]
        )
        t0 = time.perf_counter()
        collect.main(cfg, log=lambda _: None)
        wall = time.perf_counter() - t0
    episodes = seeds * per_seed
    return {
        "episodes": episodes,
        "seconds": round(wall, 3),
        "episodes_per_s": round(episodes / wall, 1),
    }


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@contextlib.contextmanager
def loopback_cluster(nodes: int, cpus: int = 1) -> Iterator[str]:
    """Start a Ray cluster of ``nodes`` nodes on this machine; yield its address; stop it."""
    import ray

    temp = tempfile.mkdtemp(prefix="hsray", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    ports = _free_ports(2 + 6 * nodes)
    address = f"127.0.0.1:{ports[0]}"
    ray_bin = str(Path(sys.executable).parent / "ray")
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(nodes):
            own = [
                a
                for n, p in zip(names, ports[2 + 6 * i : 8 + 6 * i], strict=True)
                for a in (n, str(p))
            ]
            head = [
                "--head",
                "--port",
                str(ports[0]),
                "--include-dashboard",
                "false",
                "--ray-client-server-port",
                str(ports[1]),
                "--temp-dir",
                temp,
            ]
            cmd = [
                ray_bin,
                "start",
                *(head if i == 0 else ["--address", address]),
                *own,
                "--block",
                "--num-cpus",
                str(cpus),
                "--disable-usage-stats",
            ]
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            while i == 0:
                try:
                    socket.create_connection(("127.0.0.1", ports[0]), 1).close()
                    break
                except OSError:
                    time.sleep(0.3)
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=address, log_to_driver=False)
        while sum(n["Alive"] for n in ray.nodes()) < nodes:
            time.sleep(0.5)
        ray.shutdown()
        yield address
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def ray_cluster_bench(envs: list[str], as_json: bool) -> None:
    """Episodes/s of ``--backend ray`` on an existing 1-node and 2-node loopback cluster."""
    rows = []
    for env in envs:
        seeds, per_seed = RAY_SIZES.get(env, (60, 22))
        row: dict[str, object] = {"env": env, "episodes": seeds * per_seed}
        for nodes in (1, 2):
            with loopback_cluster(nodes) as address:
                os.environ["RAY_ADDRESS"] = address
                load = os.getloadavg()[0]
                row[f"nodes{nodes}"] = {
                    **measure(env, seeds, per_seed, 2, "ray"),
                    "load_before": round(load, 2),
                }
                del os.environ["RAY_ADDRESS"]
        one, two = row["nodes1"], row["nodes2"]
        row["ratio"] = round(two["episodes_per_s"] / one["episodes_per_s"], 2)  # type: ignore[index]
        rows.append(row)
        if not as_json:
            print(
                f"{env:10s} {row['episodes']:6d} episodes  1 node {one['episodes_per_s']:8.1f} ep/s"  # type: ignore[index]
                f"  2 nodes {two['episodes_per_s']:8.1f} ep/s  ratio {row['ratio']:.2f}x"  # type: ignore[index]
                f"  (load before {one['load_before']:.2f} / {two['load_before']:.2f})",  # type: ignore[index]
                flush=True,
            )
    if as_json:
        print(
            json.dumps(
                {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg(), "results": rows},
                indent=2,
            )
        )
    else:
        print(f"load average after the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, 4 environments")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--envs", default=None, help="comma-separated presets")
    parser.add_argument(
        "--ray-cluster",
        action="store_true",
        help="--backend ray on an existing 1- vs 2-node loopback cluster",
    )
    ns = parser.parse_args()
    if ns.ray_cluster:
        ray_cluster_bench(ns.envs.split(",") if ns.envs else ["taxi", "doorkey"], ns.json)
        return
    envs = ns.envs.split(",") if ns.envs else list(QUICK_ENVS if ns.quick else SIZES)
    rows = []
    for env in envs:
        seeds, per_seed = SIZES[env][1 if ns.quick else 0]
        one = measure(env, seeds, per_seed, 1)
        two = measure(env, seeds, per_seed, 2)
        ratio = round(two["episodes_per_s"] / one["episodes_per_s"], 2)
        rows.append({"env": env, "episodes": one["episodes"], "w1": one, "w2": two, "ratio": ratio})
        if not ns.json:
            print(
                f"{env:14s} {one['episodes']:6d} episodes  1 proc {one['episodes_per_s']:8.1f} ep/s"
                f"  2 procs {two['episodes_per_s']:8.1f} ep/s  ratio {ratio:.2f}x",
                flush=True,
            )
    if not ns.json:
        print(f"load average after the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if ns.json:
        meta = {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
        }
        print(json.dumps({**meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
