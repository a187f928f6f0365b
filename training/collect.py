"""Phase I collection: ``helpseek collect`` -> a step-log directory (Parquet shards + manifest).

One shard per task seed: ``episodes_per_seed`` rollouts of that seed, rollout j intervening
at random with probability ``p_grid[j % len(p_grid)]``. A shard depends only on the config
and its seed (episode RNGs come from :func:`training.envs.episode_rng`), so the rows are the
same for any number of workers or either backend. Finished shards are skipped on re-runs.

Shards run on a local process pool (``--backend process``) or on Ray (``--backend ray``): a
local Ray started for the run, or an existing cluster at ``--ray-address`` or, unset, at
``RAY_ADDRESS`` (e.g. ``127.0.0.1:6379`` or ``ray://head:10001``). On Ray, the content of any plug-in ``.py`` file
the spec loads travels with each task (workers need helpseek installed, not the file), each
worker returns its shard's bytes and the driver writes them, so the output folder need not
be shared; a task whose worker dies is retried (``max_retries``), one that stalls (a frozen
node) is resubmitted, and a re-run after the driver dies skips every shard already written.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from helpseek_core.types import STEP_LOG_SCHEMA_VERSION
from training.config import CollectConfig, add_dataclass_arguments, from_namespace
from training.envs import EnvAdapter, episode_rng, episodes_to_steplog, make_env, run_episode
from training.envs.plugin import install_sources, plugin_sources
from training.envs.registry import spec_files
from training.steplog_io import META_KEY, StepLogError, write_manifest, write_steplog

__all__ = [
    "RAY_MAX_RETRIES",
    "RAY_STRAGGLER",
    "ShardTask",
    "add_arguments",
    "collect_shard",
    "collect_shard_bytes",
    "from_args",
    "main",
    "plan_shards",
]

ShardTask = dict[str, Any]
RAY_MAX_RETRIES = 3  # a Ray task whose worker process dies is run again up to this many times
# a Ray shard running longer than max(5 x the median shard time, 10 s) is resubmitted
RAY_STRAGGLER = (5.0, 10.0)
_ADAPTERS: dict[str, EnvAdapter] = {}  # per-process cache: building an adapter runs VI / imports


def _fingerprint(cfg: CollectConfig, spec: str) -> str:
    """Hash of what fixes the rows: the canonical spec, plug-in file contents, the settings."""
    keys = (
        "episodes_per_seed",
        "p_grid",
        "k",
        "cost",
        "intervention_type",
        "root_seed",
        "record_text",
    )
    fields = {k: cfg.to_dict()[k] for k in keys}
    fields["env"] = spec
    files = plugin_sources(spec_files(spec))
    if files:
        fields["plugin_sha256"] = {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan_shards(cfg: CollectConfig, spec: str | None = None) -> list[ShardTask]:
    """One task per seed, train pool first; episode ids are position x episodes_per_seed + j.

    ``spec`` is the adapter's canonical spec (default: build it from ``cfg.env``); tasks carry
    it, so a worker in any folder or on any machine rebuilds the same adapter.
    """
    spec = spec or _adapter(cfg.env).spec
    fp = _fingerprint(cfg, spec)
    seeds = [("train", s) for s in cfg.train_seeds] + [("test", s) for s in cfg.test_seeds]
    return [
        {
            "env": spec,
            "split": split,
            "task_id": seed,
            "name": f"{split}-{seed:07d}.parquet",
            "path": str(Path(cfg.out) / "shards" / f"{split}-{seed:07d}.parquet"),
            "first_episode": i * cfg.episodes_per_seed,
            "episodes": cfg.episodes_per_seed,
            "p_grid": list(cfg.p_grid),
            "k": cfg.k,
            "cost": cfg.cost,
            "intervention_type": cfg.intervention_type,
            "root_seed": cfg.root_seed,
            "record_text": cfg.record_text,
            "fingerprint": fp,
        }
        for i, (split, seed) in enumerate(seeds)
    ]


def _adapter(spec: str) -> EnvAdapter:
    if spec not in _ADAPTERS:
        _ADAPTERS[spec] = make_env(spec)
    return _ADAPTERS[spec]


def collect_shard(task: ShardTask) -> dict[str, Any]:
    """Run one shard's rollouts and write its Parquet file; returns the shard's summary."""
    adapter = _adapter(task["env"])
    grid = task["p_grid"]
    episodes = []
    horizon = 0
    for j in range(task["episodes"]):
        rng, dyn = episode_rng(task["root_seed"], task["task_id"], j)
        ep = run_episode(
            adapter,
            task["task_id"],
            grid[j % len(grid)],
            rng=rng,
            k=task["k"],
            cost=task["cost"],
            intervention_type=task["intervention_type"],
            dynamics_seed=dyn,
            episode_id=task["first_episode"] + j,
            record_text=task["record_text"],
        )
        horizon = max(horizon, adapter.horizon)
        episodes.append(ep)
    log = episodes_to_steplog(episodes, len(adapter.feature_names))
    summary = {
        "name": task["name"],
        "split": task["split"],
        "task_id": task["task_id"],
        "episodes": len(episodes),
        "rows": len(log),
        "horizon": horizon,
        "successes": sum(e.success for e in episodes),
        "interventions": sum(e.interventions for e in episodes),
        "env_steps": sum(e.steps for e in episodes),
    }
    extra = {"fingerprint": task["fingerprint"], "shard": summary, "env": adapter.spec}
    write_steplog(log, task["path"], adapter.feature_names, extra=extra)
    return summary


def _finished(task: ShardTask) -> dict[str, Any] | None:
    """Return the summary of an already written shard of this config, else None."""
    path = Path(task["path"])
    if not path.is_file():
        return None
    try:
        meta = json.loads((pq.read_schema(path).metadata or {})[META_KEY])
    except Exception:  # unreadable or foreign: collect it again (the write is atomic)
        return None
    if meta.get("fingerprint") != task["fingerprint"]:
        raise StepLogError(
            f"{path}: shard was written by a different collection config; use a fresh --out"
        )
    return dict(meta["shard"])


def _run_process(tasks: list[ShardTask], workers: int) -> Iterable[dict[str, Any]]:
    if workers == 1:
        yield from map(collect_shard, tasks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(collect_shard, t) for t in tasks]
            for fut in as_completed(futures):
                yield fut.result()
    except BrokenProcessPool as exc:
        raise ChildProcessError(f"a worker process died ({exc})") from exc


def collect_shard_bytes(task: ShardTask, sources: dict[str, bytes]) -> tuple[dict[str, Any], bytes]:
    """Ray task: run one shard on a worker; return (summary, the shard file's bytes).

    Installs the shipped plug-in files first, writes the shard into a private temporary
    file; the driver writes the bytes to the output folder.
    """
    install_sources(sources)
    with tempfile.TemporaryDirectory(prefix="helpseek-shard-") as tmp:
        summary = collect_shard({**task, "path": str(Path(tmp) / task["name"])})
        return summary, (Path(tmp) / task["name"]).read_bytes()


def _write_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def _run_ray(tasks: list[ShardTask], workers: int, address: str | None) -> Iterable[dict[str, Any]]:
    """Run shards on Ray: an existing cluster at ``address``, else a local Ray of ``workers`` CPUs."""
    import ray

    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, log_to_driver=False)
    elif started:
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield from _ray_shards(ray, tasks, workers)
    finally:
        if started:
            ray.shutdown()


def _ray_shards(ray: Any, tasks: list[ShardTask], workers: int) -> Iterable[dict[str, Any]]:
    """Keep one shard in flight per cluster CPU; resubmit stragglers; write shards as they land.

    Ray reruns a task whose worker process dies, but not one whose node stops answering
    (a frozen machine: the node is declared dead, the task's reply never comes). So a shard
    running longer than :data:`RAY_STRAGGLER` (a multiple of the median shard time, with a
    floor) is cancelled and submitted again, at most ``RAY_MAX_RETRIES`` times.
    """
    sources = plugin_sources(spec_files(tasks[0]["env"])) if tasks else {}
    shipped = ray.put(sources)
    remote = ray.remote(max_retries=RAY_MAX_RETRIES)(collect_shard_bytes)
    queue = list(tasks)
    pending: dict[Any, tuple[ShardTask, float]] = {}  # ref -> (task, submitted at)
    resubmits: dict[str, int] = {}
    took: list[float] = []
    stalls = 0

    def submit(task: ShardTask) -> None:
        # after a stall, a new scheduling class (a hair less CPU): the owner's lease requests
        # for the old one may be stuck on the node that stopped answering
        fn = remote.options(num_cpus=1 - 1e-3 * stalls) if stalls else remote
        pending[fn.remote(task, shipped)] = (task, time.monotonic())

    while queue or pending:
        slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
        while queue and len(pending) < slots:
            submit(queue.pop(0))
        done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not done:
            factor, floor = RAY_STRAGGLER
            limit = max(factor * statistics.median(took), floor) if took else float("inf")
            for ref, (task, since) in list(pending.items()):
                if time.monotonic() - since <= limit:
                    continue
                resubmits[task["name"]] = resubmits.get(task["name"], 0) + 1
                if resubmits[task["name"]] > RAY_MAX_RETRIES:
                    raise ChildProcessError(
                        f"shard {task['name']} stalled {RAY_MAX_RETRIES + 1} times "
                        f"(> {limit:.0f} s each)"
                    )
                del pending[ref]
                with contextlib.suppress(Exception):  # best effort: its node may be gone
                    ray.cancel(ref, force=True)
                stalls += 1
                submit(task)
            continue
        task, since = pending.pop(done[0])
        try:
            summary, content = ray.get(done[0])
        except ray.exceptions.RayTaskError as exc:  # the shard itself raised
            raise ChildProcessError(f"shard {task['name']} failed: {exc.cause!r}") from exc
        except ray.exceptions.RayError as exc:  # worker / node lost beyond the retries
            reason = str(exc).strip().splitlines()[0]
            raise ChildProcessError(
                f"shard {task['name']} lost after {RAY_MAX_RETRIES} retries ({reason})"
            ) from exc
        took.append(time.monotonic() - since)
        _write_atomic(Path(task["path"]), content)
        yield summary


def main(cfg: CollectConfig, log: Callable[[str], None] = print) -> Path:
    """Collect every shard not yet on disk, then write the manifest; returns ``cfg.out``."""
    out = Path(cfg.out)
    if cfg.ray_address and cfg.backend != "ray":
        raise ValueError(f"collect: ray_address {cfg.ray_address!r} needs backend 'ray'")
    adapter = _adapter(cfg.env)  # a bad spec fails before anything is written
    _ADAPTERS.setdefault(adapter.spec, adapter)  # forked workers inherit the cache
    (out / "shards").mkdir(parents=True, exist_ok=True)
    tasks = plan_shards(cfg, adapter.spec)
    done = {t["name"]: s for t in tasks if (s := _finished(t)) is not None}
    todo = [t for t in tasks if t["name"] not in done]
    ray_address = (
        (cfg.ray_address or os.environ.get("RAY_ADDRESS") or None) if cfg.backend == "ray" else None
    )
    where = f" on the Ray cluster at {ray_address}" if ray_address else ""
    log(
        f"collect {adapter.spec}: {len(tasks)} shards, {len(done)} already done, "
        f"{len(todo)} to run{where}"
    )
    t0 = time.perf_counter()
    workers = min(cfg.workers, max(len(todo), 1))
    if cfg.backend == "ray":
        shards = _run_ray(todo, workers, ray_address)
    else:
        shards = _run_process(todo, workers)
    bar = tqdm(total=len(todo), desc="shards", unit="shard", disable=not cfg.progress)
    try:
        for summary in shards:
            done[summary["name"]] = summary
            bar.update(1)
    except ChildProcessError as exc:  # an OSError: the CLI exits 2 with this message
        raise ChildProcessError(
            f"collect {adapter.spec}: {exc}; {len(done)} of {len(tasks)} shards are written in "
            f"{out / 'shards'}: run the same command again to resume"
        ) from exc
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    shards = [done[t["name"]] for t in tasks]
    counts: dict[str, Any] = {}
    for split in ("train", "test"):
        sub = [s for s in shards if s["split"] == split]
        eps = sum(s["episodes"] for s in sub)
        counts[split] = {
            "episodes": eps,
            "rows": sum(s["rows"] for s in sub),
            "success_rate": sum(s["successes"] for s in sub) / eps if eps else None,
            "interventions": sum(s["interventions"] for s in sub),
        }
    manifest = {
        "schema_version": STEP_LOG_SCHEMA_VERSION,
        "kind": "steplog",
        "env": adapter.spec,
        "agent": adapter.agent,
        "expert": adapter.expert,
        "k": cfg.k,
        "cost": cfg.cost,
        "intervention_type": cfg.intervention_type,
        "horizon": max(s["horizon"] for s in shards),
        "p_grid": list(cfg.p_grid),
        "episodes_per_seed": cfg.episodes_per_seed,
        "seeds": {"train": list(cfg.train_seeds), "test": list(cfg.test_seeds)},
        "feature_names": list(adapter.feature_names),
        "feature_dim": len(adapter.feature_names),
        "has_text": cfg.record_text,
        "shards": shards,
        "counts": counts,
        "fingerprint": tasks[0]["fingerprint"] if tasks else _fingerprint(cfg, adapter.spec),
        "config": cfg.to_dict(),
        "last_run": {
            "shards_run": len(todo),
            "seconds": round(elapsed, 3),
            "backend": cfg.backend,
            "ray_address": ray_address,
        },
    }
    write_manifest(out, manifest)
    log(
        f"wrote {out}: train {counts['train']['episodes']} episodes / {counts['train']['rows']} rows, "
        f"test {counts['test']['episodes']} / {counts['test']['rows']} ({elapsed:.1f}s)"
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek collect``: one per :class:`CollectConfig` field."""
    add_dataclass_arguments(parser, CollectConfig, aliases={"record_text": "--text"})


def from_args(ns: argparse.Namespace) -> CollectConfig:
    """Build the config from parsed ``helpseek collect`` arguments."""
    return from_namespace(CollectConfig, ns)
