"""Dynamic batching: concurrent requests share one forward pass.

A forward pass over 8 images costs far less than 8 passes over one, so the batcher holds
the first waiting request for up to ``max_latency_ms`` while others arrive, then runs them
together (at most ``max_batch_size`` images; a single larger request runs on its own) and
hands each request its rows back. One worker thread owns the model: inference stays off
the event loop, and the model is never entered by two threads at once.

``close()`` stops intake and lets the worker finish everything already queued, which is
what makes a SIGTERM drain lose no request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from .metrics import ServeMetrics


@dataclass
class _Job:
    batch: torch.Tensor
    future: Future[torch.Tensor] = field(default_factory=Future)

    @property
    def size(self) -> int:
        return int(self.batch.shape[0])


_STOP = object()


class BatcherClosed(RuntimeError):
    """Raised by :meth:`DynamicBatcher.submit` once the batcher no longer takes work."""


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
        self._queue: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()
        self._accepting = False
        self._thread = threading.Thread(target=self._work, name="res2net-batcher", daemon=True)

    @property
    def running(self) -> bool:
        return self._accepting

    def start(self) -> None:
        with self._lock:
            self._accepting = True
        self._thread.start()

    async def submit(self, batch: torch.Tensor) -> torch.Tensor:
        """Queue ``batch`` (``[N, ...]``) and wait for its ``[N, C]`` result rows."""
        job = _Job(batch)
        with self._lock:
            if not self._accepting:
                raise BatcherClosed("the server is shutting down")
            self._queue.put(job)
        self._queue_changed(+1)
        return await asyncio.wrap_future(job.future)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop taking work, finish every queued job, and join the worker."""
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _work(self) -> None:
        carried: _Job | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            jobs, carried, stop = self._gather(first)
            self._execute(jobs)
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], _Job | None, bool]:
        """Jobs to run with ``first``, a job that did not fit (runs next), and whether STOP was seen.

        STOP is only ever queued last, so seeing it means nothing is left behind it.
        """
        jobs = [first]
        size = first.size
        deadline = time.monotonic() + self._max_latency_s
        while size < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return jobs, None, True
            assert isinstance(item, _Job)
            if size + item.size > self._max_batch_size:
                return jobs, item, False
            jobs.append(item)
            size += item.size
        return jobs, None, False

    def _execute(self, jobs: list[_Job]) -> None:
        self._queue_changed(-len(jobs))
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = live[0].batch if len(live) == 1 else torch.cat([job.batch for job in live])
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
