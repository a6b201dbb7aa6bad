"""``res2net benchmark``: train-step and inference speed against timm / onnxruntime, in one process."""

from __future__ import annotations

import argparse
import sys

import torch

from .contenders import inference_contenders, train_step_contenders
from .timing import format_table, interleaved, peak_rss_mib


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
        calibration = torch.randn(32, 3, args.image_size, args.image_size)
        contenders = inference_contenders(args.model, args.timm_model, args.batch_size, args.image_size, calibration)
        timings = interleaved(contenders, rounds=args.rounds, items=args.batch_size)
        print(format_table("inference:", timings))
    print(f"peak RSS: {peak_rss_mib():.0f} MiB", file=sys.stdout)
    return 0
