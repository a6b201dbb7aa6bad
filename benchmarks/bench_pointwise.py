"""1x1 convolutions in training on CPU: oneDNN's convolution against the same product as a GEMM.

``PointwiseConv2d`` trains as a GEMM on maps of at most ``gemm_max_positions`` positions; this
script measures why and where, on one network at one input size:

* every distinct 1x1 convolution of the network (shape as it runs in the step), forward and
  backward, oneDNN's convolution against the GEMM path, interleaved, with the ratio and how
  often the shape occurs;
* the whole training step (``profile_train_step.make_step``: channels_last, fused momentum SGD,
  autocast at ``--precision``) with the GEMM path as shipped against ``gemm_max_positions = 0``
  (every 1x1 a convolution), interleaved round by round.

    python benchmarks/bench_pointwise.py [--image-size 32] [--batch-size 32] [--precision fp32]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from profile_train_step import DTYPES, make_step  # the sibling script's training step (run from benchmarks/)

from res2net.benchmark import format_table, interleaved
from res2net.evaluate import autocast_context
from res2net.models import build_model
from res2net.models.pointwise import PointwiseConv2d

SHIPPED_LIMIT = PointwiseConv2d.gemm_max_positions
# (batch, in, out, height, width, stride) of one 1x1 convolution's input
Shape = tuple[int, int, int, int, int, int]


def pointwise_shapes(model: torch.nn.Module, images: torch.Tensor) -> Counter[Shape]:
    """The inputs every PointwiseConv2d of ``model`` sees on ``images``, counted."""
    shapes: Counter[Shape] = Counter()

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, PointwiseConv2d)
        batch, channels, height, width = inputs[0].shape
        shapes[(batch, channels, module.out_channels, height, width, module.stride[0])] += 1

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, PointwiseConv2d)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return shapes


def with_limit(limit: int, run):
    """``run`` with ``PointwiseConv2d.gemm_max_positions`` set to ``limit`` while it runs."""

    def limited() -> None:
        PointwiseConv2d.gemm_max_positions = limit
        try:
            run()
        finally:
            PointwiseConv2d.gemm_max_positions = SHIPPED_LIMIT

    return limited


def layer_step(shape: Shape, dtype: str | None):
    batch, in_channels, out_channels, height, width, stride = shape
    conv = PointwiseConv2d(in_channels, out_channels, stride=stride).to(memory_format=torch.channels_last)
    x = torch.randn(batch, in_channels, height, width).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def step() -> None:
        with autocast_context(x.device, dtype):
            out = conv(x)
        out.float().sum().backward()
        conv.weight.grad = x.grad = None

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="res2net50")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=DTYPES, default="fp32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.precision]
    model = build_model(args.model).to(memory_format=torch.channels_last)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    images = images.contiguous(memory_format=torch.channels_last)
    print(f"{args.model}, {args.image_size} px, batch {args.batch_size}, {args.precision}, "
          f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds, medians; "
          f"shipped gemm_max_positions = {SHIPPED_LIMIT}")

    print("each 1x1 convolution, forward + backward (ms):")
    print(f"  {'batch x in -> out @ HxW /stride':34s} {'count':>5s} {'conv':>8s} {'GEMM':>8s} {'ratio':>6s}  path")
    totals = {"conv": 0.0, "GEMM": 0.0, "shipped": 0.0}  # seconds per step: every 1x1 one way, or as shipped
    for shape, count in sorted(pointwise_shapes(model, images).items(), key=lambda item: item[0][3]):
        step = layer_step(shape, dtype)
        conv, gemm = interleaved({"conv": with_limit(0, step), "gemm": with_limit(1 << 30, step)},
                                 rounds=args.rounds, items=1)
        batch, cin, cout, height, width, stride = shape
        shipped = "GEMM" if height * width <= SHIPPED_LIMIT else "conv"
        label = f"{batch} x {cin} -> {cout} @ {height}x{width} /{stride}"
        print(f"  {label:34s} {count:5d} {conv.median * 1e3:8.2f} {gemm.median * 1e3:8.2f} "
              f"{conv.median / gemm.median:5.2f}x  {shipped}")
        totals["conv"] += count * conv.median
        totals["GEMM"] += count * gemm.median
        totals["shipped"] += count * (gemm.median if shipped == "GEMM" else conv.median)
    print("  all 1x1 convolutions of one step: " + ", ".join(
        f"{path} {seconds * 1e3:.1f} ms ({totals['conv'] / seconds:.2f}x)" for path, seconds in totals.items()))

    step = make_step(model.train(), args.batch_size, args.image_size, dtype)
    timings = interleaved({"every 1x1 a convolution (limit 0)": with_limit(0, step),
                           f"GEMM up to {SHIPPED_LIMIT} positions (shipped)": step},
                          rounds=args.rounds, items=args.batch_size)
    print(format_table("training step:", timings))


if __name__ == "__main__":
    main()
