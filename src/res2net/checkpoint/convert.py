"""``res2net convert``: turn any supported checkpoint into a safetensors file of our names.

Converting once means later loads need neither protobuf parsing nor name translation,
and the result can be shared with tools that only read safetensors. The output is
produced by loading the source into the real network (so a file that does not fit the
model is refused, not converted) and re-read afterwards to check it round-trips.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from res2net.checkpoint.formats import read_state_dict
from res2net.checkpoint.load import load_state_into
from res2net.checkpoint.remap import HEAD_WEIGHT, to_our_names
from res2net.errors import CheckpointError
from res2net.models.factory import build_model


def convert(src: str | Path, dst: str | Path, model_name: str, *, use_ema: bool = False) -> int:
    """Write ``src``'s weights as ``model_name``'s state dict to ``dst`` (safetensors).

    Returns the number of classes of the written classifier (0: the checkpoint had none).
    """
    src, dst = Path(src), Path(dst)
    source = read_state_dict(src, use_ema=use_ema)
    model = build_model(model_name)
    # Keep the checkpoint's classifier size (e.g. MindCV's 1001) rather than re-initialising it.
    head = to_our_names(source, model.state_dict()).get(HEAD_WEIGHT)
    num_classes = int(head.shape[0]) if head is not None else 0
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    load_state_into(model, source, origin=str(src), model_name=model_name, strict_head=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "model": model_name, "num_classes": str(num_classes), "source": src.name}

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        written = read_state_dict(tmp)
        if written.keys() != state.keys() or any(not torch.equal(written[k], v) for k, v in state.items()):
            raise CheckpointError(f"{dst}: written file does not read back identically")
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return num_classes


def add_convert_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``convert SRC DST --model NAME [--ema]`` on a CLI's subparsers."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a checkpoint (ours, official .pth, timm, MindCV .ckpt) to safetensors",
        description="Read SRC in any supported format, load it into --model, and write its weights, "
        "under this package's names, to DST as safetensors.",
    )
    parser.add_argument("src", help="checkpoint to read (format detected from its contents)")
    parser.add_argument("dst", help="safetensors file to write")
    parser.add_argument("--model", required=True, help="model name, see `res2net list`")
    parser.add_argument("--ema", action="store_true", help="convert the EMA weights of a training checkpoint")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Entry point for the ``convert`` subcommand; returns the exit status."""
    num_classes = convert(args.src, args.dst, args.model, use_ema=args.ema)
    print(f"wrote {args.dst}: {args.model}, {num_classes} classes")
    return 0
