"""Micro-batching for asyncio servers: many concurrent requests, one forward pass.

:class:`MicroBatcher` gathers items submitted from coroutines for up to ``max_wait_s`` (or until
``max_batch`` items are waiting), then runs the batch function **once** on the whole list in a
worker thread, so the event loop never blocks on a forward pass and health checks keep
answering. While a batch runs, new items queue up and form the next batch, so batches grow by
themselves under load (at most ``max_batch``).

::

    batcher = MicroBatcher(lambda texts: scorer.score(texts)[:, 1], max_batch=32, max_wait_s=0.002)
    p = await batcher.submit("You are in a room ...")      # from many coroutines at once
    await batcher.aclose()

The batch function gets a ``list`` of items and must return a sequence of the same length,
row ``i`` answering item ``i``. If it raises, every caller of that batch gets the exception.
One batch runs at a time (torch already uses every core for one batch). The worker task is
started on the first ``submit`` inside the running loop (use one batcher per event loop);
importing this module starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from helpseek_text.errors import BatcherError

__all__ = ["BatcherStats", "MicroBatcher"]

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatcherStats:
    """Counters of a batcher (read them; the batcher updates them)."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list)  # size of every batch, in order (bounded)

    def record(self, size: int) -> None:
        """Count one batch of ``size`` items."""
        self.batches += 1
        self.items += size
        self.largest_batch = max(self.largest_batch, size)
        if len(self.sizes) < 10_000:
            self.sizes.append(size)

    @property
    def mean_batch(self) -> float:
        """Average items per batch (0 before the first batch)."""
        return self.items / self.batches if self.batches else 0.0


_CLOSE = object()


class MicroBatcher(Generic[Item, Result]):
    """Collect concurrent ``submit`` calls into batches run in a worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        executor: Executor | None = None,
    ) -> None:
        if max_batch < 1:
            raise BatcherError(f"max_batch must be >= 1, got {max_batch}")
        if not 0.0 <= max_wait_s <= 1.0:
            raise BatcherError(f"max_wait_s must be in [0, 1] seconds, got {max_wait_s}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="helpseek-batch")
        self._queue: asyncio.Queue[object] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = BatcherStats()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    async def submit(self, item: Item) -> Result:
        """Queue one item and wait for its row of the batch result."""
        if self._closed:
            raise BatcherError("the micro-batcher is closed")
        loop = asyncio.get_running_loop()
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve(queue), name="helpseek-microbatcher")
        fut: asyncio.Future[Result] = loop.create_future()
        queue.put_nowait((item, fut))
        return await fut

    async def aclose(self) -> None:
        """Stop accepting items, finish the queued ones, stop the worker and its thread."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None and self._queue is not None:
            self._queue.put_nowait(_CLOSE)
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._own_executor:
            self._executor.shutdown(wait=False)

    async def _serve(self, queue: asyncio.Queue[object]) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await queue.get()
            if first is _CLOSE:
                return
            batch = [first]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    nxt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(queue.get(), timeout)
                    except TimeoutError:
                        break
                if nxt is _CLOSE:
                    stop = True
                    break
                batch.append(nxt)
            await self._run(loop, batch)  # type: ignore[arg-type]

    async def _run(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        live = [(item, fut) for item, fut in batch if not fut.cancelled()]
        if not live:
            return
        items = [item for item, _ in live]
        self.stats.record(len(items))
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as exc:  # every caller of the batch sees the batch's error
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    def _call(self, items: list[Item]) -> list[Result]:
        results = list(self._run_batch(items))
        if len(results) != len(items):
            raise BatcherError(
                f"the batch function returned {len(results)} results for {len(items)} items"
            )
        return results
