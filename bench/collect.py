"""Collection throughput: episodes/s per environment with 1 and 2 worker processes.

    python bench/collect.py [--quick] [--json] [--envs taxi,gotolocal]

Each run is a real ``helpseek collect`` (fork process pool, Parquet shards written) into a
fresh temporary directory; the adapter cache is cleared first so both runs pay the same
set-up. The ratio (2 workers / 1 worker) comes from the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
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
}
QUICK_ENVS = ("taxi", "frozenlake", "gotolocal", "putnextlocal")


def measure(env: str, seeds: int, per_seed: int, workers: int) -> dict[str, float]:
    collect._ADAPTERS.clear()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            env=env, out=Path(tmp), train_seeds=tuple(range(seeds)), test_seeds=(),
            episodes_per_seed=per_seed, workers=workers, progress=False,
        )  # fmt: skip
        t0 = time.perf_counter()
        collect.main(cfg, log=lambda _: None)
        wall = time.perf_counter() - t0
    episodes = seeds * per_seed
    return {
        "episodes": episodes,
        "seconds": round(wall, 3),
        "episodes_per_s": round(episodes / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, 4 environments")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--envs", default=None, help="comma-separated presets")
    ns = parser.parse_args()
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
