"""Micro-batching: requests that arrive close together share one forward pass.

A convolutional network's forward pass over 32 images costs far less than 32 passes over one, so
the service holds the first waiting request for at most ``max_wait_s`` while others join it, up to
``max_batch`` images, then runs them as one ``N x C x H x W`` batch. It only waits while other
requests are known to be on their way (announced with :meth:`MicroBatcher.announce` while their
images are decoded), so a lone request is never delayed. Requests that queue up while a batch is
running form the next batch without any extra wait. ``max_batch=1`` is plain one-at-a-time serving.

The queue is bounded: when it is full :meth:`MicroBatcher.submit` raises at once (the service
answers 503 with ``Retry-After``) instead of letting latency grow without limit. The model runs on
one dedicated thread, so the event loop keeps accepting and answering requests meanwhile.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from .errors import ServeError, overloaded

# (batch N x C x H x W uint8, largest top_k wanted) -> one result per image.
RunBatch = Callable[[torch.Tensor, int], list[Any]]


@dataclass
class _Job:
    image: torch.Tensor  # C x H x W uint8
    top_k: int
    future: asyncio.Future


class MicroBatcher:
    """Collects single-image requests into batches for ``run_batch``; one per served model."""

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 32, max_wait_s: float = 0.005,
                 queue_size: int = 256, name: str = "model", threads: int = 0):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.name = name
        # torch's thread count is per OS thread: the inference thread gets it explicitly (0: whatever
        # the thread that starts the batcher has).
        self.threads = threads
        self.batches_run = 0
        self.images_run = 0
        self.on_batch: Callable[[int], None] | None = None  # told each batch's size (the service's metrics)
        self._queue: asyncio.Queue[_Job] | None = None
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.incoming = 0  # requests announced but not yet submitted
        self._current: list[_Job] = []  # jobs taken from the queue whose batch has not finished yet

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def pending(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + len(self._current)

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        if self.running:
            return
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._arrived = asyncio.Event()
        threads = self.threads or torch.get_num_threads()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.name}",
                                            initializer=torch.set_num_threads, initargs=(threads,))
        self._worker = asyncio.create_task(self._work(), name=f"batcher-{self.name}")

    @contextmanager
    def announce(self) -> Iterator[None]:
        """Declare, for the duration of the block, a request that is about to be submitted (its
        image is being decoded), so a batch that is filling up waits for it."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1

    async def submit(self, image: torch.Tensor, top_k: int) -> Any:
        """Queue one C x H x W uint8 image and wait for its result."""
        if not self.running:
            raise ServeError(503, "unavailable", "the service is shutting down", retry_after=1)
        job = _Job(image, top_k, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise overloaded(f"the queue of model '{self.name}'") from None
        self._arrived.set()
        return await job.future

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Finish what is queued (up to ``drain_timeout_s``), then stop the worker and its thread."""
        if self._worker is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        while self.pending and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        left = list(self._current)  # anything left after the drain timeout is told so
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for job in left:
            if not job.future.done():
                job.future.set_exception(ServeError(503, "unavailable", "the service is shutting down"))
        self._executor.shutdown(wait=True)
        self._worker = None

    async def _collect(self) -> list[_Job]:
        """Wait for a first job, then gather more until the batch is full or the wait is over."""
        jobs = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(jobs) < self.max_batch:
            try:
                jobs.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0 or self.incoming == 0:  # nobody else on the way: waiting would only add latency
                break
            # An Event (not queue.get) is awaited under the timeout: cancelling it can lose nothing.
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            jobs = [j for j in jobs if not j.future.done()]  # callers that timed out have gone
            if not jobs:
                continue
            self._current = jobs
            try:
                batch = torch.stack([j.image for j in jobs])  # N x C x H x W uint8
                results = await loop.run_in_executor(self._executor, self.run_batch, batch,
                                                     max(j.top_k for j in jobs))
            except Exception as e:  # a failing batch fails its requests, never the worker
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(e)
            else:
                self.batches_run += 1
                self.images_run += len(jobs)
                if self.on_batch is not None:
                    self.on_batch(len(jobs))
                for j, result in zip(jobs, results):
                    if not j.future.done():
                        j.future.set_result(result[: j.top_k] if isinstance(result, list) else result)
            finally:
                self._current = []
