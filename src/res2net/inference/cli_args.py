"""Command-line arguments shared by ``res2net predict`` and ``res2net export``: which
model, which weights, which labels."""

from __future__ import annotations

import argparse

from ..models import list_models


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="NAME", help=f"model name, e.g. {list_models()[0]}")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", metavar="PATH", help="checkpoint in any supported format")
    weights.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        default=False,
        metavar="TAG",
        help="the model's published weights (optionally a tag such as 'official' or 'mindcv')",
    )
    parser.add_argument("--labels", metavar="FILE", help="class names, one per line (overrides stored names)")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: from the weights)")
