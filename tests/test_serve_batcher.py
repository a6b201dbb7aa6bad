"""The dynamic batcher on its own: grouping, limits, result routing, errors and draining."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from res2net.serve.batcher import BatcherClosed, DynamicBatcher
from res2net.serve.metrics import ServeMetrics


class Recorder:
    """A stand-in model: row i of the output is the input's first value, so routing is visible."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay = threading.Event()
        self._delay_s = delay_s

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.sizes.append(batch.shape[0])
        self.threads.add(threading.current_thread().name)
        if self._delay_s:
            self.delay.wait(self._delay_s)
        return batch.flatten(1)[:, :1] * 10


def _batch(first: float, rows: int = 1) -> torch.Tensor:
    return torch.arange(rows, dtype=torch.float32).add(first).reshape(rows, 1, 1, 1).expand(rows, 1, 2, 2).contiguous()


async def _submit_all(batcher: DynamicBatcher, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    return await asyncio.gather(*(batcher.submit(batch) for batch in batches))


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    recorder = Recorder()
    metrics = ServeMetrics()
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=200, metrics=metrics)
    batcher.start()
    batches = [_batch(100 * i, rows=1 + i % 3) for i in range(6)]  # 12 images in all
    results = asyncio.run(_submit_all(batcher, batches))
    batcher.close()
    for batch, result in zip(batches, results, strict=True):
        torch.testing.assert_close(result, batch[:, :1, 0, 0] * 10)
    assert sum(recorder.sizes) == 12
    assert max(recorder.sizes) > 1 and all(size <= 8 for size in recorder.sizes)
    assert recorder.threads == {"res2net-batcher"}
    assert metrics.registry.get_sample_value("res2net_batch_size_count") == len(recorder.sizes)
    assert metrics.registry.get_sample_value("res2net_batch_size_sum") == 12
    assert metrics.registry.get_sample_value("res2net_queue_depth") == 0


def test_oversized_request_runs_alone() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=4, max_latency_ms=50)
    batcher.start()
    results = asyncio.run(_submit_all(batcher, [_batch(0, rows=7), _batch(50, rows=2)]))
    batcher.close()
    assert [r.shape[0] for r in results] == [7, 2]
    assert sorted(recorder.sizes) == [2, 7]


def test_zero_latency_does_not_wait_for_company() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=16, max_latency_ms=0)
    batcher.start()
    result = asyncio.run(batcher.submit(_batch(3)))
    batcher.close()
    assert recorder.sizes == [1] and result.item() == 30


def test_model_errors_reach_every_waiting_request() -> None:
    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("model exploded")

    batcher = DynamicBatcher(broken, max_batch_size=4, max_latency_ms=50)
    batcher.start()

    async def both() -> list[object]:
        return await asyncio.gather(batcher.submit(_batch(0)), batcher.submit(_batch(1)), return_exceptions=True)

    outcomes = asyncio.run(both())
    batcher.close()
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


def test_close_drains_queued_work_then_refuses() -> None:
    recorder = Recorder(delay_s=0.3)
    batcher = DynamicBatcher(recorder, max_batch_size=1, max_latency_ms=0)
    batcher.start()
    loop = asyncio.new_event_loop()
    try:
        tasks = [loop.create_task(batcher.submit(_batch(i))) for i in range(3)]
        loop.run_until_complete(asyncio.sleep(0.05))  # all three are queued, one is running
        closer = threading.Thread(target=batcher.close)
        closer.start()
        results = loop.run_until_complete(asyncio.gather(*tasks))
        closer.join(10)
        assert not closer.is_alive()
        assert [r.item() for r in results] == [0, 10, 20]
        assert recorder.sizes == [1, 1, 1]
        with pytest.raises(BatcherClosed):
            loop.run_until_complete(batcher.submit(_batch(9)))
    finally:
        loop.close()


def test_cancelled_requests_are_skipped() -> None:
    recorder = Recorder(delay_s=0.3)
    batcher = DynamicBatcher(recorder, max_batch_size=1, max_latency_ms=0)
    batcher.start()

    async def scenario() -> torch.Tensor:
        first = asyncio.ensure_future(batcher.submit(_batch(1)))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(batcher.submit(_batch(2)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        return await first

    assert asyncio.run(scenario()).item() == 10
    batcher.close()
    assert recorder.sizes == [1]
