"""``res2net benchmark``: train-step and inference speed against timm, OpenVINO and onnxruntime."""

from __future__ import annotations

import argparse

from .handlers import lazy_handler


def add_benchmark_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "benchmark",
        help="measure train-step and inference speed against timm / OpenVINO / onnxruntime in one process",
        description="Interleaved side-by-side timings (medians, ratios, peak RSS).",
    )
    parser.add_argument("--model", default="res2net50_26w_4s", help="our model name")
    parser.add_argument("--timm-model", default="res2net50_26w_4s", help="timm's name for the same network")
    parser.add_argument("--what", choices=("train", "inference", "all"), default="all")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16], help="batch sizes (default 16)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="train: precisions to time (default both)")
    parser.add_argument("--compile", action="store_true", help="train: also time ours under torch.compile")
    parser.add_argument("--cpu-kernels", choices=("fused", "off"), default="fused",
                        help="train: ours with the fused CPU BatchNorm kernels (built if needed; default) or without")
    parser.add_argument(
        "--retain-host-memory", action="store_true",
        help="keep freed memory in the process, as our train.py does on CPU; it applies to every contender, "
             "timm included, since they share one process",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure and ratio")
    parser.add_argument("--record", metavar="FILE.jsonl",
                        help="append the run as one row (date, commit, host, versions, command, figures) to FILE")
    parser.set_defaults(handler=lazy_handler("res2net.speed.cli:run_benchmark"))
    return parser
