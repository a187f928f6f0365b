"""The micro-batcher: ordering, batching, errors, the event loop stays free; real embed backend."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from helpseek_text import BatcherError, MicroBatcher


class SlowSquare:
    """A batch function that takes ``delay`` seconds per call (a fake only to inject delay)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[list[int]] = []
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return [x * x for x in items]


def test_concurrent_requests_share_batches_and_keep_their_order():
    fn = SlowSquare(0.05)

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.005)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        await batcher.aclose()
        return results, batcher.stats

    results, stats = asyncio.run(main())
    assert results == [i * i for i in range(20)]
    assert stats.items == 20 and stats.batches == len(fn.calls) <= 4
    assert max(len(c) for c in fn.calls) == 8  # max_batch is respected
    assert sorted(x for c in fn.calls for x in c) == list(range(20))
    assert fn.threads and all(t.startswith("helpseek-batch") for t in fn.threads)


def test_the_event_loop_keeps_running_during_a_forward_pass():
    fn = SlowSquare(0.3)

    async def main():
        batcher = MicroBatcher(fn, max_batch=4, max_wait_s=0.001)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        await batcher.submit(3)
        elapsed = time.perf_counter() - t0
        task.cancel()
        await batcher.aclose()
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    assert elapsed >= 0.3
    assert ticks >= 15  # ~30 possible; 0 if the forward pass ran on the loop


def test_requests_arriving_during_a_batch_form_the_next_batch():
    fn = SlowSquare(0.1)

    async def main():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.02)  # batch [0] is running now
        rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 6)))
        await batcher.aclose()
        return await first, rest

    first, rest = asyncio.run(main())
    assert first == 0 and rest == [1, 4, 9, 16, 25]
    assert fn.calls == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_batch_fails_each_of_its_callers_and_the_batcher_survives():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("forward pass failed")
        return items

    async def main():
        batcher = MicroBatcher(flaky, max_batch=8, max_wait_s=0.005)
        failed = await asyncio.gather(
            *(batcher.submit(i) for i in range(3)), return_exceptions=True
        )
        ok = await batcher.submit(7)
        await batcher.aclose()
        return failed, ok

    failed, ok = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) and str(e) == "forward pass failed" for e in failed)
    assert ok == 7


def test_wrong_result_count_and_closed_batcher_are_named_errors():
    async def main():
        batcher = MicroBatcher(lambda items: items[:-1], max_batch=4, max_wait_s=0.0)
        with pytest.raises(BatcherError, match="returned 0 results for 1 items"):
            await batcher.submit(1)
        await batcher.aclose()
        with pytest.raises(BatcherError, match="closed"):
            await batcher.submit(1)

    asyncio.run(main())
    with pytest.raises(BatcherError, match="max_batch must be >= 1"):
        MicroBatcher(lambda items: items, max_batch=0)


def test_a_cancelled_request_does_not_disturb_the_others():
    fn = SlowSquare(0.05)

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_s=0.02)
        doomed = asyncio.create_task(batcher.submit(100))
        others = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        doomed.cancel()
        results = await asyncio.gather(*others)
        await batcher.aclose()
        return results

    assert asyncio.run(main()) == [0, 1, 4]
    assert all(100 not in c for c in fn.calls)


def test_real_embed_backend_batched_equals_direct(embed_encoder):
    texts = [
        f"The agent is in room {i}. The door is {'open' if i % 2 else 'locked'}." for i in range(12)
    ]
    direct = embed_encoder.encode(texts)

    async def main():
        batcher = MicroBatcher(
            lambda items: list(embed_encoder.encode(items)), max_batch=8, max_wait_s=0.005
        )
        rows = await asyncio.gather(*(batcher.submit(t) for t in texts))
        await batcher.aclose()
        return np.stack(rows), batcher.stats

    batched, stats = asyncio.run(main())
    assert stats.batches == 2 and stats.largest_batch == 8
    np.testing.assert_allclose(batched, direct, atol=1e-5)
