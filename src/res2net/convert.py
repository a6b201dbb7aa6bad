"""``res2net convert``: turn any supported checkpoint into a safetensors file of our names.

Converting once means later loads need neither protobuf parsing nor name translation, and the
result can be shared with tools that only read safetensors. The output is produced by loading
the source into the real network with :func:`res2net.create_model` (so a file that does not fit
the model is refused, not converted), keeps the source's classifier as it is (MindCV's 1001
rows included), stores the weights' ``pretrained_cfg`` as JSON in the file's metadata so that
class names and preprocessing travel with it, and is re-read afterwards to check it round-trips.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from res2net.checkpoint import read_state_dict
from res2net.checkpoint.formats import SAFETENSORS_CFG_KEY, read_checkpoint
from res2net.checkpoint.remap import head_rows
from res2net.errors import CheckpointError
from res2net.factory import cfg_of_file, model_from_checkpoint


def convert(src: str | Path, dst: str | Path, model_name: str, *, use_ema: bool = False) -> int:
    """Write ``src``'s weights as ``model_name``'s state dict to ``dst`` (safetensors).

    Returns the number of classes of the written classifier (0: the checkpoint had none).
    """
    src, dst = Path(src), Path(dst)
    raw = read_checkpoint(src, use_ema=use_ema)
    num_classes = head_rows(raw.state, raw.format) or 0
    model = model_from_checkpoint(model_name, raw, cfg_of_file(model_name, raw), num_classes=num_classes)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": "pt",
        "model": model_name,
        "num_classes": str(num_classes),
        "source": src.name,
        SAFETENSORS_CFG_KEY: json.dumps(model.pretrained_cfg.to_dict()),
    }
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
