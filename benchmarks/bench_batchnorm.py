"""BatchNorm + ReLU, forward and backward in training mode, by precision and memory format.

``profile_train_step.py --precision bf16`` puts BatchNorm backward and forward at about a
quarter of an eager bf16 step. This asks whether that is the channels_last bf16 kernel: each
of Res2Net-50's BatchNorm shapes at 224 px is timed, interleaved, as

* ``fp32 NCHW`` / ``fp32 NHWC``: float32 input, contiguous or channels_last;
* ``bf16 NCHW`` / ``bf16 NHWC``: bfloat16 input (what autocast hands BatchNorm after a
  convolution), float32 affine parameters and statistics, as in an autocast step;
* ``bf16 NHWC via NCHW``: the channels_last bfloat16 input made contiguous, normalised, and
  returned to channels_last — what a layer that avoids the NHWC kernel would pay;
* ``bf16 NHWC ours`` / ``fp32 NHWC ours``: channels_last input through the model's norm with the
  ReLU inside it, as the model runs it: the fused kernels of ``res2net.models.fused_norm``;
* ``bf16 NHWC detour`` / ``fp32 NHWC detour``: the same where those kernels cannot be built:
  ``NarrowBatchNorm2d``'s NCHW detour on the narrow shapes where it pays, PyTorch's kernel elsewhere.

With ``--compiled``, two more: ``bf16 NHWC compiled`` / ``fp32 NHWC compiled``, the same
channels_last step through ``torch.compile`` (inductor), which is what ``compile: True`` turns
BatchNorm + ReLU into; it shows why compiling does not pay on CPU (see the README).

Ratios are to ``bf16 NHWC``, the format our bf16 training step runs in. ``--step`` instead
times res2net50's whole training step at 224 px (``profile_train_step.py``'s step), interleaved:
with the fused kernels (as the model runs), with the detour alone (kernels off), and with
neither.

    python benchmarks/bench_batchnorm.py [--batch-size 16] [--rounds 9] [--threads 2] [--compiled] [--step]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from profile_train_step import make_step  # the sibling script's training step (run from benchmarks/)

from res2net.benchmark import interleaved
from res2net.models import build_model, fused_norm
from res2net.models.narrow_norm import NarrowBatchNorm2d

# (channels, spatial size) of Res2Net-50's BatchNorms at 224 px: stem, then per stage the wide
# 1x1 output, one scale split, and the block output.
SHAPES = [(64, 112), (104, 56), (26, 56), (256, 56), (208, 28), (52, 28), (512, 28),
          (416, 14), (1024, 14), (832, 7), (2048, 7)]


def bn_relu_step(
    x: torch.Tensor, bn: torch.nn.BatchNorm2d, via_nchw: bool, compiled: bool = False
) -> Callable[[], None]:
    """One forward + backward of ReLU(BatchNorm(x)), the way a block runs it in training
    (with ``compiled``, as inductor generates it)."""
    x = x.detach().requires_grad_(True)

    def bn_relu(inputs: torch.Tensor) -> torch.Tensor:
        if isinstance(bn, fused_norm.TrainingBatchNorm2d):
            return bn(inputs, relu=True)
        return F.relu(bn(inputs))

    forward = torch.compile(bn_relu, dynamic=False) if compiled else bn_relu

    def step() -> None:
        inputs = x.contiguous() if via_nchw else x
        out = forward(inputs)
        if via_nchw:
            out = out.contiguous(memory_format=torch.channels_last)
        out.backward(torch.ones_like(out))
        x.grad = None
        bn.weight.grad = bn.bias.grad = None

    return step


@contextlib.contextmanager
def fused_kernels_off() -> Iterator[None]:
    """What a machine that cannot build the fused kernels runs."""
    saved = fused_norm.fused_kernels
    fused_norm.fused_kernels = lambda: None  # type: ignore[assignment]
    try:
        yield
    finally:
        fused_norm.fused_kernels = saved


def without_kernels(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with fused_kernels_off():
            step()

    return run


def contenders_for(batch: int, channels: int, size: int, compiled: bool) -> dict[str, Callable[[], None]]:
    bn = torch.nn.BatchNorm2d(channels)
    ours = NarrowBatchNorm2d(channels)
    base = torch.randn(batch, channels, size, size)
    nhwc = torch.channels_last
    contenders = {
        "bf16 NHWC": bn_relu_step(base.bfloat16().contiguous(memory_format=nhwc), bn, False),
        "bf16 NCHW": bn_relu_step(base.bfloat16(), bn, False),
        "bf16 NHWC via NCHW": bn_relu_step(base.bfloat16().contiguous(memory_format=nhwc), bn, True),
        "bf16 NHWC ours": bn_relu_step(base.bfloat16().contiguous(memory_format=nhwc), ours, False),
        "bf16 NHWC detour": without_kernels(bn_relu_step(base.bfloat16().contiguous(memory_format=nhwc), ours, False)),
        "fp32 NHWC": bn_relu_step(base.contiguous(memory_format=nhwc), bn, False),
        "fp32 NCHW": bn_relu_step(base, bn, False),
        "fp32 NHWC ours": bn_relu_step(base.contiguous(memory_format=nhwc), ours, False),
        "fp32 NHWC detour": without_kernels(bn_relu_step(base.contiguous(memory_format=nhwc), ours, False)),
    }
    if compiled:
        # Every shape is a new graph; a fresh dynamo cache keeps its recompile limit from
        # quietly sending later shapes back to eager.
        torch._dynamo.reset()
        contenders["bf16 NHWC compiled"] = bn_relu_step(
            base.bfloat16().contiguous(memory_format=nhwc), bn, False, compiled=True)
        contenders["fp32 NHWC compiled"] = bn_relu_step(
            base.contiguous(memory_format=nhwc), bn, False, compiled=True)
    return contenders


def step_with_and_without_kernels(batch: int, rounds: int) -> None:
    """One res2net50 training step per precision: with the fused kernels (as the model runs), with
    the detour alone (kernels off), and with neither (kernels off, ``max_channels`` 0)."""
    for precision, dtype in (("bf16", "bfloat16"), ("fp32", None)):
        model = build_model("res2net50").to(memory_format=torch.channels_last).train()
        fused_step = make_step(model, batch, 224, dtype)
        detour_step = without_kernels(make_step(copy.deepcopy(model), batch, 224, dtype))
        plain_step = without_kernels(make_step(copy.deepcopy(model), batch, 224, dtype))

        def plain(step: Callable[[], None] = plain_step) -> None:
            saved = NarrowBatchNorm2d.max_channels
            NarrowBatchNorm2d.max_channels = 0
            try:
                step()
            finally:
                NarrowBatchNorm2d.max_channels = saved

        steps = {"fused": fused_step, "detour": detour_step, "neither": plain}
        timings = interleaved(steps, rounds=rounds, items=batch, warmup=1)
        fused, detour, neither = (timing.median for timing in timings)
        print(f"{precision} step, batch {batch}: fused kernels {fused:.3f} s, "
              f"detour alone {detour:.3f} s ({detour / fused:.3f}x), "
              f"neither {neither:.3f} s ({neither / fused:.3f}x)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compiled", action="store_true", help="also time the torch.compile'd step")
    parser.add_argument("--step", action="store_true", help="time the whole training step instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.step:
        step_with_and_without_kernels(args.batch_size, args.rounds)
        return
    totals: dict[str, float] = {}
    names: list[str] = []
    for channels, size in SHAPES:
        timings = interleaved(contenders_for(args.batch_size, channels, size, args.compiled), rounds=args.rounds,
                              items=args.batch_size, warmup=2)
        names = [timing.name for timing in timings]
        baseline = timings[0].median
        cells = "  ".join(f"{t.name} {t.median * 1e3:7.2f} ms ({baseline / t.median:4.2f}x)" for t in timings)
        print(f"{channels:5d}x{size:<3d} {cells}", flush=True)
        for timing in timings:
            totals[timing.name] = totals.get(timing.name, 0.0) + timing.median
    print("sum of medians over the shapes (one of each), speed relative to bf16 NHWC:")
    for name in names:
        print(f"  {name:20s} {totals[name] * 1e3:8.2f} ms  {totals[names[0]] / totals[name]:5.2f}x")


if __name__ == "__main__":
    main()
