"""Side-by-side speed measurement: ours against timm (and onnxruntime) in one process.

Every comparison runs its contenders in interleaved rounds — one timed call each per
round — so background load, CPU frequency changes and allocator warm-up hit all of them
alike; medians of the per-round times and ratios to the baseline are reported. This is
what ``res2net benchmark`` prints and what the scripts in ``benchmarks/`` call.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .evaluate import autocast_context
from .models import build_model

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


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Trained-like BatchNorm statistics, so both sides compute on realistic values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, dtype: str | None) -> Callable[[], None]:
    """One plain training step (forward, cross-entropy, backward, SGD) as a benchmark callable."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
    model.train()

    def step() -> None:
        with autocast_context(images.device, dtype):
            loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def train_step_contenders(
    model_name: str, timm_name: str, batch: int, size: int, dtype: str | None, device: str = "cpu"
) -> Contenders:
    """Our model and timm's, same weights, same loop, channels_last inputs and weights."""
    import timm

    torch.manual_seed(0)
    reference = timm.create_model(timm_name, num_classes=1000)
    ours = build_model(model_name)
    ours.load_state_dict(reference.state_dict())
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,), device=device)

    def prepared(model: nn.Module) -> nn.Module:
        return model.to(device, memory_format=torch.channels_last)

    return {
        f"timm {timm_name}": train_step(prepared(reference), images, targets, dtype),
        f"ours {model_name}": train_step(prepared(ours), images, targets, dtype),
    }


def add_benchmark_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "benchmark",
        help="measure train-step and inference speed against timm / onnxruntime in one process",
        description="Interleaved side-by-side timings (medians, ratios, peak RSS).",
    )
    parser.add_argument("--model", default="res2net50_26w_4s", help="our model name")
    parser.add_argument("--timm-model", default="res2net50_26w_4s", help="timm's name for the same network")
    parser.add_argument("--what", choices=("train", "inference", "all"), default="all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def run_benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    header = (f"{args.model} vs timm {args.timm_model}, batch {args.batch_size}, {args.image_size}px, "
              f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds, medians")
    print(header)
    if args.what in ("train", "all"):
        for label, dtype in (("fp32", None), ("bf16 autocast", "bfloat16")):
            contenders = train_step_contenders(args.model, args.timm_model, args.batch_size, args.image_size, dtype)
            timings = interleaved(contenders, rounds=args.rounds, items=args.batch_size)
            print(format_table(f"train step, {label}, channels_last:", timings))
    if args.what in ("inference", "all"):
        from .inference.benchmark import inference_contenders

        calibration = torch.randn(32, 3, args.image_size, args.image_size)
        contenders = inference_contenders(args.model, args.timm_model, args.batch_size, args.image_size, calibration)
        timings = interleaved(contenders, rounds=args.rounds, items=args.batch_size)
        print(format_table("inference:", timings))
    print(f"peak RSS: {peak_rss_mib():.0f} MiB", file=sys.stdout)
    return 0
