"""Dynamic batching: concurrent requests share one forward pass.

A forward pass over 8 images costs less than 8 passes over one, so requests that are
waiting together run together (at most ``max_batch_size`` images) and each gets its rows back.
A request larger than that arrives as several chunks of at most ``max_batch_size`` (see
:meth:`Expected.submit`), so no forward pass, and no preprocessed tensor, is ever larger than
the server was configured for, whatever a client sends. One worker thread owns the model: inference
stays off the event loop, and the model is never entered by two threads at once.

When to run is the whole design. A fixed wait ("hold the first request ``max_latency_ms``
for company") taxes every lone request and still fires half-empty batches when the rest
are a few milliseconds away. Instead the server *announces* each request as soon as its
headers arrive (:meth:`DynamicBatcher.expect`), while its body is still being read and
decoded. The worker then

* takes everything already queued (requests that arrived while the last batch ran), and
* waits, at most ``max_latency_ms``, only while announced requests are still on their way,

so a request that is alone runs at once, and a burst fills its batch.

The worker is also the only thread that runs PyTorch's parallel kernels: a request may hand
it a :class:`Deferred` batch whose tensor is made there (image preprocessing). libgomp, the
OpenMP runtime of PyTorch's CPU builds, stops spin-waiting between parallel regions once
more threads own OpenMP teams than there are cores, and a batch-1 Res2Net-50 forward pass
in bf16 then measured ~1.5x slower on 2 cores; one thread keeps it at full speed.

``close()`` stops intake and lets the worker finish everything already queued, which is
what makes a SIGTERM drain lose no request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .metrics import ServeMetrics


@dataclass(frozen=True)
class Deferred:
    """``rows`` images whose ``[rows, ...]`` tensor ``make()`` builds on the worker thread."""

    rows: int
    make: Callable[[], torch.Tensor]


Batch = torch.Tensor | Deferred


@dataclass
class _Job:
    inputs: Batch
    future: Future[torch.Tensor] = field(default_factory=Future)

    @property
    def size(self) -> int:
        return self.inputs.rows if isinstance(self.inputs, Deferred) else int(self.inputs.shape[0])

    def tensor(self) -> torch.Tensor:
        if not isinstance(self.inputs, Deferred):
            return self.inputs
        made = self.inputs.make()
        if made.shape[0] != self.inputs.rows:  # rows are routed back by count; a mismatch would mix results
            raise ValueError(f"deferred inputs promised {self.inputs.rows} rows and made {made.shape[0]}")
        return made


class BatcherClosed(RuntimeError):
    """Raised by ``submit`` once the batcher no longer takes work."""


class Expected:
    """An announced request; :meth:`submit` turns it into queued work (see ``DynamicBatcher.expect``)."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self.pending = True

    async def submit(self, batch: Batch | Sequence[Batch]) -> torch.Tensor:
        """Queue ``batch`` (``[N, ...]``), or the chunks of one request in order, and wait for the
        ``[N, C]`` result rows (the chunks' rows concatenated)."""
        if not self.pending:
            raise RuntimeError("an announced request can be submitted once")
        chunks = list(batch) if isinstance(batch, Sequence) else [batch]
        jobs = self._batcher._enqueue(chunks, self)
        results = [await asyncio.wrap_future(job.future) for job in jobs]
        return results[0] if len(results) == 1 else torch.cat(results)


class DynamicBatcher:
    """Queue, group and run requests on one worker thread; see the module docstring."""

    def __init__(
        self,
        run: Callable[[torch.Tensor], torch.Tensor],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        metrics: ServeMetrics | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_latency_ms < 0:
            raise ValueError(f"max_latency_ms must be >= 0, got {max_latency_ms}")
        self._run = run
        self._max_batch_size = max_batch_size
        self._max_latency_s = max_latency_ms / 1000.0
        self._metrics = metrics
        self._jobs: deque[_Job] = deque()
        self._expected = 0
        self._accepting = False
        # Guards the four fields above; notified whenever a job arrives, an announced
        # request stops being expected, or intake closes.
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="res2net-batcher", daemon=True)

    @property
    def running(self) -> bool:
        return self._accepting

    def start(self) -> None:
        with self._changed:
            self._accepting = True
        self._thread.start()

    @contextmanager
    def expect(self) -> Iterator[Expected]:
        """Announce a request that will be submitted soon, for the duration of the block.

        Batches wait (up to ``max_latency_ms``) for announced requests. Leaving the block
        without submitting (a bad request) withdraws the announcement.
        """
        expected = Expected(self)
        with self._changed:
            self._expected += 1
        try:
            yield expected
        finally:
            with self._changed:
                if expected.pending:
                    self._settle(expected)

    async def submit(self, batch: Batch | Sequence[Batch]) -> torch.Tensor:
        """Queue ``batch`` (or one request's chunks), announced and ready at once, and wait for its rows."""
        with self.expect() as expected:
            return await expected.submit(batch)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop taking work, finish every queued job, and join the worker."""
        with self._changed:
            if not self._accepting:
                return
            self._accepting = False
            self._changed.notify_all()
        self._thread.join(timeout_s)

    def _enqueue(self, chunks: list[Batch], announced: Expected) -> list[_Job]:
        jobs = [_Job(chunk) for chunk in chunks]
        oversized = [job.size for job in jobs if job.size > self._max_batch_size]
        with self._changed:
            self._settle(announced)
            if oversized:  # the caller must chunk: a larger pass is what the limit exists to prevent
                raise ValueError(f"a chunk of {oversized[0]} rows exceeds max_batch_size {self._max_batch_size}")
            if not self._accepting:
                raise BatcherClosed("the server is shutting down")
            self._jobs.extend(jobs)
            self._changed.notify_all()
        self._queue_changed(+len(jobs))
        return jobs

    def _settle(self, expected: Expected) -> None:
        """Caller holds the lock: ``expected`` is no longer on its way."""
        expected.pending = False
        self._expected -= 1
        self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._jobs and self._accepting:
                    self._changed.wait()
                if not self._jobs:  # closed and drained
                    return
                jobs = self._gather()
            self._execute(jobs)

    def _gather(self) -> list[_Job]:
        """Caller holds the lock and the queue is not empty: the jobs for the next pass."""
        jobs = [self._jobs.popleft()]
        size = jobs[0].size
        deadline = time.monotonic() + self._max_latency_s
        while size < self._max_batch_size:
            if self._jobs:
                if size + self._jobs[0].size > self._max_batch_size:
                    break  # it runs first in the next pass
                job = self._jobs.popleft()
                jobs.append(job)
                size += job.size
                continue
            remaining = deadline - time.monotonic()
            if self._expected == 0 or not self._accepting or remaining <= 0:
                break
            self._changed.wait(remaining)
        return jobs

    def _execute(self, jobs: list[_Job]) -> None:
        self._queue_changed(-len(jobs))
        live: list[_Job] = []
        tensors: list[torch.Tensor] = []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue  # its request was cancelled (the client went away)
            try:
                tensors.append(job.tensor())
            except Exception as err:  # that request's own inputs failed; the others still run
                job.future.set_exception(err)
                continue
            live.append(job)
        if not live:
            return
        try:
            batch = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
            if self._metrics is not None:
                self._metrics.batch_size.observe(batch.shape[0])
            started = time.perf_counter()
            result = self._run(batch)
            if self._metrics is not None:
                self._metrics.inference_seconds.observe(time.perf_counter() - started)
        except Exception as err:  # delivered to every waiting request, never lost in the thread
            for job in live:
                job.future.set_exception(err)
            return
        offset = 0
        for job in live:
            job.future.set_result(result[offset : offset + job.size])
            offset += job.size

    def _queue_changed(self, delta: int) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.inc(delta)
