"""Interleaved timing: every contender once per round, round after round.

Background load, CPU frequency changes and allocator warm-up then hit all contenders alike;
medians of the per-round times and ratios to the baseline are reported.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

Contenders = dict[str, Callable[[], object]]


@dataclass(frozen=True)
class Timing:
    """Median seconds per call of one contender, and throughput for ``items`` per call."""

    name: str
    seconds: list[float]
    items: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_second(self) -> float:
        return self.items / self.median


def _synchronize() -> None:
    """Wait for queued GPU work, so a timed call includes its kernels (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleaved(contenders: Contenders, *, rounds: int, items: int, warmup: int = 1) -> list[Timing]:
    """Time each contender once per round, round after round (after ``warmup`` untimed rounds).

    The order changes every round (seeded): a contender must not always follow the same
    one, since a thread pool still spinning after its run slows whatever comes next.
    """
    for _ in range(warmup):
        for run in contenders.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for name in order:
            _synchronize()
            started = time.perf_counter()
            contenders[name]()
            _synchronize()
            seconds[name].append(time.perf_counter() - started)
    return [Timing(name, values, items) for name, values in seconds.items()]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_table(title: str, timings: list[Timing], unit: str = "img/s") -> str:
    """Throughput and ratio to the first contender, one line each."""
    baseline = timings[0].per_second
    lines = [title, f"  {'contender':44s} {unit:>9s} {'ratio':>7s}"]
    for timing in timings:
        lines.append(f"  {timing.name:44s} {timing.per_second:9.2f} {timing.per_second / baseline:6.2f}x")
    return "\n".join(lines)
