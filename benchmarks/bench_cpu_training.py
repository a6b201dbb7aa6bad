"""What each piece of ``res2net.cpu_training`` buys on the training step, measured, so each can earn its place.

One process, one interleaved run per setting (every variant once per round, in a shuffled
order), res2net50's training step as our trainer runs it (channels-last, the recipe's fused
momentum SGD, StepRunner) on four variants of the same model:

* ``plain``: the model as built (``cpu_kernels: off``);
* ``gemm 1x1``: the training copy with ``GemmConv1x1`` only;
* ``fused BatchNorm``: the training copy with the fused BatchNorm kernels only;
* ``both``: the training copy ``cpu_kernels: fused`` trains with.

Settings (``--setting SIZE:BATCH:PRECISION``, repeatable) default to ImageNet crops (224 px,
batch 16) in fp32 and bf16, and the README main job's digits (32 px, batch 64, fp32).
``--record`` appends the medians to ``benchmarks/results/cpu_training.jsonl``.

    python benchmarks/bench_cpu_training.py [--rounds 3] [--threads 2] [--record]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from res2net.cpu_training import accelerate_cpu_training, load_kernels
from res2net.models import build_model
from res2net.speed import format_table, interleaved
from res2net.speed.contenders import our_train_step
from res2net.speed.results import append_row, make_row

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_training.jsonl"
DTYPES = {"fp32": None, "bf16": "bfloat16"}
DEFAULT_SETTINGS = ("224:16:fp32", "224:16:bf16", "32:64:fp32")
PLAIN, GEMM, FUSED, BOTH = "plain", "gemm 1x1", "fused BatchNorm", "both (cpu_kernels: fused)"


def parse_setting(text: str) -> tuple[int, int, str]:
    size, batch, precision = text.split(":")
    if precision not in DTYPES:
        raise argparse.ArgumentTypeError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    return int(size), int(batch), precision


def variants(size: int, batch: int, precision: str, kernels: object) -> dict[str, object]:
    """The four steps, each on its own copy of the same initial weights."""
    torch.manual_seed(0)
    initial = build_model("res2net50").state_dict()
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,))
    steps = {}
    for name, fused, gemm in ((PLAIN, False, False), (GEMM, False, True), (FUSED, True, False), (BOTH, True, True)):
        model = build_model("res2net50")
        model.load_state_dict(initial)
        model = model.to(memory_format=torch.channels_last)
        trained = model if name == PLAIN else accelerate_cpu_training(
            model, kernels=kernels if fused else None, gemm_1x1=gemm)
        steps[name] = our_train_step(trained, images, targets, DTYPES[precision])
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", type=parse_setting, action="append",
                        help=f"SIZE:BATCH:PRECISION, repeatable (default {' '.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--record", action="store_true", help=f"append the medians to {RESULTS}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels = load_kernels(build=True)
    settings = args.setting or [parse_setting(s) for s in DEFAULT_SETTINGS]
    figures = {}
    for size, batch, precision in settings:
        timings = interleaved(variants(size, batch, precision, kernels), rounds=args.rounds, items=batch)
        print(format_table(f"res2net50 train step, {size} px, batch {batch}, {precision}:", timings), flush=True)
        plain = timings[0].per_second
        figures[f"{size}px_b{batch}_{precision}"] = {
            t.name: {"img_per_s": round(t.per_second, 3), "over_plain": round(t.per_second / plain, 3)}
            for t in timings
        }
    if args.record:
        append_row(RESULTS, make_row("cpu_training", figures, folder=Path(__file__).resolve().parent,
                                     settings={"rounds": args.rounds, "threads": torch.get_num_threads()}))
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
