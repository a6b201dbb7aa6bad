"""``res2net convert``: any supported checkpoint to safetensors under our names (or mmdetection's)."""

from __future__ import annotations

import argparse

from .handlers import lazy_handler


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``convert SRC DST --model NAME [--ema] [--to safetensors|mmdet]``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (ours, official .pth, timm, MindCV .ckpt) to safetensors",
        description="Read SRC in any supported format, load it into --model, and write its weights, "
        "under this package's names, to DST as safetensors (or, with --to mmdet, the trunk in "
        "mmdetection's Res2Net naming).",
    )
    parser.add_argument("src", help="checkpoint to read (format detected from its contents)")
    parser.add_argument("dst", help="safetensors file to write")
    parser.add_argument("--model", required=True, help="model name, see `res2net models`")
    parser.add_argument("--ema", action="store_true", help="convert the EMA weights of a training checkpoint")
    parser.add_argument("--to", choices=("safetensors", "mmdet"), default="safetensors",
                        help="output: safetensors of our names (default), or an mmdetection backbone .pth "
                        "(v1b models only)")
    parser.set_defaults(handler=lazy_handler("res2net.convert:run_convert"))
    return parser
