"""Text path benchmark: decisions/s and p50/p99 with and without micro-batching, per backend.

    python bench/text.py [--quick] [--json] [--backends embed,lm] [--concurrency 16]

For each backend: load the encoder (timed), train the toy text model (helpseek_text.toy),
measure the per-input forward latency (one text, median), then run the same closed-loop load
twice in one process — ``concurrency`` asyncio clients, each sending its next request when the
previous answer arrives:

- unbatched: every request runs ``scorer.decide_prob([text], ...)`` alone in a one-thread pool
  (the event loop never blocks, but one forward pass per request);
- batched: requests go through ``MicroBatcher`` (max_batch 32, max_wait 2 ms), one forward pass
  per batch.

Both report decisions/s, p50/p99 latency per request and the ratio batched/unbatched. The GPU
(vllm) figures are not measured here: see docs/llm.md for the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpseek_text import HeadConfig, MicroBatcher, TextModelConfig, train_text_model  # noqa: E402
from helpseek_text.encoders import build_encoder  # noqa: E402
from helpseek_text.toy import door_is_open, toy_task  # noqa: E402


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


async def closed_loop(call, requests: list[tuple[str, int, int]], concurrency: int) -> dict:
    lat: list[float] = []
    it = iter(requests)

    async def client() -> None:
        for req in it:
            t0 = time.perf_counter()
            await call(req)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {
        "decisions": len(lat),
        "decisions_per_s": len(lat) / wall,
        "p50_ms": 1e3 * percentile(lat, 50),
        "p99_ms": 1e3 * percentile(lat, 99),
    }


async def run_load(scorer, requests, concurrency: int) -> dict:
    pool = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()

    async def single(req):
        text, c, left = req
        return await loop.run_in_executor(pool, scorer.decide_prob, [text], [c], [left])

    unbatched = await closed_loop(single, requests, concurrency)
    pool.shutdown()

    def batch(items):
        texts, cs, lefts = zip(*items, strict=True)
        return list(scorer.decide_prob(list(texts), list(cs), list(lefts)))

    batcher = MicroBatcher(batch, max_batch=32, max_wait_s=0.002)
    batched = await closed_loop(batcher.submit, requests, concurrency)
    await batcher.aclose()
    batched["mean_batch"] = batcher.stats.mean_batch
    return {
        "unbatched": unbatched,
        "batched": batched,
        "ratio": batched["decisions_per_s"] / unbatched["decisions_per_s"],
    }


def bench_backend(backend: str, quick: bool, concurrency: int) -> dict:
    rng = np.random.default_rng(0)
    cfg = TextModelConfig(backend=backend, batch_size=32)
    t0 = time.perf_counter()
    encoder = build_encoder(cfg)
    load_s = time.perf_counter() - t0
    small = backend == "lm"
    n_train, n_test = (48, 20) if small else (160, 80)
    task = toy_task(rng, n_train, n_test, cmax=2)
    t0 = time.perf_counter()
    scorer = train_text_model(
        cfg,
        rng,
        prm=task.train_prm,
        helper=task.train_helper,
        head=HeadConfig(),
        cmax=2,
        horizon=30,
        encoder=encoder,
    )
    train_s = time.perf_counter() - t0
    texts = list(task.test_prm.texts)
    both = scorer.score(texts)
    locked = door_is_open(texts) == 0
    ex = task.test_helper
    p = scorer.decide_prob(list(ex.texts), ex.remaining, ex.steps_left)
    quality = {
        "n_train": n_train,
        "n_test": n_test,
        "prm_door_accuracy": float(np.mean((both[:, 0] > 0.5) == door_is_open(texts))),
        "prm_help_lift_locked": float(np.mean(both[locked, 1] - both[locked, 0])),
        "helper_accuracy": float(np.mean((p > 0.5) == ex.labels)),
        "helper_majority": float(max(ex.labels.mean(), 1 - ex.labels.mean())),
    }
    one = texts[0]
    singles = []
    for _ in range(5 if small else 30):
        t0 = time.perf_counter()
        scorer.decide_prob([one], [1], [10])
        singles.append(time.perf_counter() - t0)
    n_req = (32 if quick else 128) if small else (128 if quick else 1024)
    reqs = [
        (
            ex.texts[i % len(ex.texts)],
            int(ex.remaining[i % len(ex.texts)]),
            int(ex.steps_left[i % len(ex.texts)]),
        )
        for i in range(n_req)
    ]
    load = asyncio.run(run_load(scorer, reqs, concurrency))
    return {
        "backend": backend,
        "load_s": load_s,
        "train_s": train_s,
        "forward_ms_single": 1e3 * statistics.median(singles),
        "quality": quality,
        "requests": n_req,
        "concurrency": concurrency,
        **load,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--backends", default="embed,lm")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = [bench_backend(b, args.quick, args.concurrency) for b in args.backends.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        q = r["quality"]
        print(
            f"{r['backend']}: load {r['load_s']:.1f}s, train {r['train_s']:.1f}s, one input "
            f"{r['forward_ms_single']:.1f} ms; toy quality: PRM door acc {q['prm_door_accuracy']:.2f}, "
            f"help lift {q['prm_help_lift_locked']:.2f}, helper acc {q['helper_accuracy']:.2f} "
            f"(majority {q['helper_majority']:.2f})"
        )
        for mode in ("unbatched", "batched"):
            m = r[mode]
            extra = f", mean batch {m['mean_batch']:.1f}" if mode == "batched" else ""
            print(
                f"  {mode:9s} {m['decisions_per_s']:8.1f} decisions/s  p50 {m['p50_ms']:7.1f} ms  "
                f"p99 {m['p99_ms']:7.1f} ms{extra}"
            )
        print(
            f"  ratio batched/unbatched: {r['ratio']:.2f}x  ({r['requests']} requests, {r['concurrency']} clients)"
        )


if __name__ == "__main__":
    main()
