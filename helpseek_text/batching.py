"""Micro-batching for asyncio servers: many concurrent requests, one forward pass.

:class:`MicroBatcher` runs a batch function **once** on the items that concurrent coroutines
submitted, in a worker thread, so the event loop never blocks on a forward pass and health
checks keep answering. One batch runs at a time (torch already uses every core it is given for
one batch); items submitted while a batch runs wait and form the next one, so batches grow by
themselves under load (at most ``max_batch``).

::

    batcher = MicroBatcher(lambda texts: scorer.score(texts)[:, 1], max_batch=32, max_wait_s=0.005)
    p = await batcher.submit("You are in a room ...")          # from many coroutines at once
    ps = await batcher.submit_many([text_a, text_b])           # one request's rows, no extra tasks
    await batcher.aclose()

**When a batch starts.** Under a closed-loop load (each client sends its next request when its
answer arrives) the callers of one batch come back together, but not in the same instant: an
HTTP server parses their next requests one after another, and a batch that started on the
first of them would split the crowd into a small batch and a large one for good. So right
after a batch, the batcher *expects* the rows that were already waiting plus the rows of the
batch that just finished (at most ``max_batch``), and starts as soon as that many wait — or
``max_wait_s`` after it looked, whichever comes first. If the first new row arrives more than
``max_wait_s`` after the last batch ended (an idle server, a lone client's think time), it
expects nothing more and starts at once. A lone client therefore never waits, and a batch never
waits longer than ``max_wait_s`` for company.

The batch function gets a ``list`` of items and must return a sequence of the same length,
row ``i`` answering item ``i``. If it raises, every caller of that batch gets the exception.
The worker task is started on the first submit inside the running loop (use one batcher per
event loop); importing this module starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
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


class MicroBatcher(Generic[Item, Result]):
    """Collect concurrent submissions into batches run in a worker thread (module docstring)."""

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
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
        self._pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._wakeup: asyncio.Future[None] | None = None  # set when an item arrives
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = BatcherStats()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    async def submit(self, item: Item) -> Result:
        """Queue one item and wait for its row of the batch result."""
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Item]) -> list[Result]:
        """Queue several items at once (one request's rows) and wait for their rows, in order."""
        if self._closed:
            raise BatcherError("the micro-batcher is closed")
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = loop.create_task(self._serve(), name="helpseek-microbatcher")
        futs: list[asyncio.Future[Result]] = []
        for item in items:
            fut: asyncio.Future[Result] = loop.create_future()
            self._pending.append((item, fut))
            futs.append(fut)
        self._wake()
        try:
            return list(await asyncio.gather(*futs))
        except asyncio.CancelledError:
            for fut in futs:  # a cancelled request's rows are dropped before they run
                fut.cancel()
            raise

    async def aclose(self) -> None:
        """Stop accepting items, finish the queued ones, stop the worker and its thread."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._own_executor:
            self._executor.shutdown(wait=False)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _wait_for_items(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        self._wakeup = loop.create_future()
        try:
            if timeout is None:
                await self._wakeup
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup
        finally:
            self._wakeup = None

    def _live(self) -> int:
        while self._pending and self._pending[0][1].cancelled():
            self._pending.popleft()
        return len(self._pending)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        want = 1  # rows to wait for before starting (module docstring, "When a batch starts")
        while True:
            ended = loop.time()
            while not self._live():
                if self._closed:
                    return
                await self._wait_for_items(loop, None)
            start = loop.time()
            if start - ended > self.max_wait_s:
                want = 1  # the last batch's callers are not about to come back
            deadline = start + self.max_wait_s
            while len(self._pending) < min(want, self.max_batch) and not self._closed:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                await self._wait_for_items(loop, timeout)
            batch: list[tuple[Item, asyncio.Future[Result]]] = []
            while self._pending and len(batch) < self.max_batch:
                item, fut = self._pending.popleft()
                if not fut.cancelled():
                    batch.append((item, fut))
            if batch:
                await self._run(loop, batch)
            want = self._live() + len(batch)

    async def _run(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Item, asyncio.Future[Result]]]
    ) -> None:
        items = [item for item, _ in batch]
        self.stats.record(len(items))
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except Exception as exc:  # every caller of the batch sees the batch's error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    def _call(self, items: list[Item]) -> list[Result]:
        results = list(self._run_batch(items))
        if len(results) != len(items):
            raise BatcherError(
                f"the batch function returned {len(results)} results for {len(items)} items"
            )
        return results
