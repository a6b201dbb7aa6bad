"""The dynamic batcher on its own: grouping, limits, result routing, errors and draining."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import ExitStack

import pytest
import torch

from res2net.serve.batcher import BatcherClosed, Deferred, DynamicBatcher
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


async def _announce_then_submit(batcher: DynamicBatcher, batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """What the server does: every request is announced before any of them is ready."""
    with ExitStack() as stack:
        slots = [stack.enter_context(batcher.expect()) for _ in batches]
        return await asyncio.gather(*(slot.submit(batch) for slot, batch in zip(slots, batches, strict=True)))


def test_announced_requests_share_batches_and_get_their_own_rows() -> None:
    recorder = Recorder()
    metrics = ServeMetrics()
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=2000, metrics=metrics)
    batcher.start()
    batches = [_batch(100 * i, rows=1 + i % 3) for i in range(6)]  # 1+2+3+1+2+3 = 12 images
    results = asyncio.run(_announce_then_submit(batcher, batches))
    batcher.close()
    for batch, result in zip(batches, results, strict=True):
        torch.testing.assert_close(result, batch[:, :1, 0, 0] * 10)
    assert recorder.sizes == [7, 5]  # filled up to the request that would overflow 8, then the rest
    assert recorder.threads == {"res2net-batcher"}
    assert metrics.registry.get_sample_value("res2net_batch_size_count") == 2
    assert metrics.registry.get_sample_value("res2net_batch_size_sum") == 12
    assert metrics.registry.get_sample_value("res2net_queue_depth") == 0


def test_a_lone_request_runs_at_once_however_long_the_window() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=16, max_latency_ms=10_000)
    batcher.start()
    started = time.monotonic()
    result = asyncio.run(_announce_then_submit(batcher, [_batch(3)]))
    elapsed = time.monotonic() - started
    batcher.close()
    assert recorder.sizes == [1] and result[0].item() == 30
    assert elapsed < 2, f"a request with no company waited {elapsed:.1f} s"


async def _first_then_second(batcher: DynamicBatcher, submit_second: bool) -> list[torch.Tensor]:
    """Two announced requests; the second is ready (or withdrawn) 0.3 s after the first."""
    with batcher.expect() as first_slot:
        first = asyncio.ensure_future(first_slot.submit(_batch(1)))
        with batcher.expect() as second_slot:
            await asyncio.sleep(0.3)
            if submit_second:
                return await asyncio.gather(first, second_slot.submit(_batch(2)))
        return [await first]  # leaving the block without submitting withdrew the announcement


def test_a_batch_waits_for_announced_requests() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=10_000)
    batcher.start()
    results = asyncio.run(_first_then_second(batcher, submit_second=True))
    batcher.close()
    assert recorder.sizes == [2]
    assert [r.item() for r in results] == [10, 20]


def test_a_withdrawn_announcement_releases_the_wait() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=10_000)
    batcher.start()
    started = time.monotonic()
    results = asyncio.run(_first_then_second(batcher, submit_second=False))
    elapsed = time.monotonic() - started
    batcher.close()
    assert recorder.sizes == [1] and results[0].item() == 10
    assert elapsed < 3, f"the batch waited {elapsed:.1f} s for a request that had been withdrawn"


def test_the_window_caps_the_wait_for_announced_requests() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=50)
    batcher.start()
    results = asyncio.run(_first_then_second(batcher, submit_second=True))
    batcher.close()
    assert recorder.sizes == [1, 1]  # the first ran after 50 ms, not 300
    assert [r.item() for r in results] == [10, 20]


def test_deferred_inputs_are_made_on_the_batcher_thread_and_fail_alone() -> None:
    recorder = Recorder()
    makers: set[str] = set()

    def make(value: float) -> torch.Tensor:
        makers.add(threading.current_thread().name)
        return _batch(value)

    def broken() -> torch.Tensor:
        raise ValueError("bad inputs")

    batcher = DynamicBatcher(recorder, max_batch_size=8, max_latency_ms=2000)
    batcher.start()

    async def scenario() -> list[object]:
        with (
            batcher.expect() as good, batcher.expect() as bad,
            batcher.expect() as plain, batcher.expect() as miscounted,
        ):
            return await asyncio.gather(
                good.submit(Deferred(1, lambda: make(4))), bad.submit(Deferred(1, broken)),
                plain.submit(_batch(5)), miscounted.submit(Deferred(1, lambda: _batch(6, rows=2))),
                return_exceptions=True,
            )

    good_result, bad_result, plain_result, miscounted_result = asyncio.run(scenario())
    batcher.close()
    assert isinstance(bad_result, ValueError) and "bad inputs" in str(bad_result)
    assert isinstance(miscounted_result, ValueError) and "promised 1 rows and made 2" in str(miscounted_result)
    assert good_result.item() == 40 and plain_result.item() == 50  # type: ignore[union-attr]
    assert makers == {"res2net-batcher"} and recorder.sizes == [2]


def test_a_large_request_runs_in_chunks_and_no_pass_exceeds_the_limit() -> None:
    """A request's chunks come back as one result in order; a chunk over the limit is refused, so no
    client can make the model run a larger pass than the server was configured for."""
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=4, max_latency_ms=50)
    batcher.start()
    request = _batch(0, rows=10)
    results = asyncio.run(_submit_all(batcher, [[request[i:i + 4] for i in range(0, 10, 4)], _batch(50, rows=2)]))
    with pytest.raises(ValueError, match="a chunk of 7 rows exceeds max_batch_size 4"):
        asyncio.run(batcher.submit(_batch(0, rows=7)))
    batcher.close()
    assert results[0].flatten().tolist() == [10.0 * i for i in range(10)]
    assert results[1].flatten().tolist() == [500.0, 510.0]
    assert max(recorder.sizes) <= 4 and sum(recorder.sizes) == 12


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
