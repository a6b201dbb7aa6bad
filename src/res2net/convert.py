"""``res2net convert``: turn any supported checkpoint into a safetensors file of our names, or
into an mmdetection backbone file.

Converting once means later loads need neither protobuf parsing nor name translation, and the
result can be shared with tools that only read safetensors. ``--to mmdet`` writes the trunk in
mmdetection's Res2Net naming (``{"meta", "state_dict"}``, what its ``init_cfg=dict(type=
"Pretrained", checkpoint=...)`` reads), so a backbone trained or converted here initialises an
mmdetection detector. The output is produced by loading
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
from typing import Literal

import torch
from safetensors.torch import save_file

from res2net.checkpoint import read_state_dict
from res2net.checkpoint.formats import SAFETENSORS_CFG_KEY, read_checkpoint
from res2net.checkpoint.mmdet import from_mmdet, to_mmdet
from res2net.checkpoint.remap import head_rows
from res2net.checkpoint.training import atomic_torch_save
from res2net.errors import CheckpointError
from res2net.factory import cfg_of_file, model_from_checkpoint

Target = Literal["safetensors", "mmdet"]


def convert(
    src: str | Path, dst: str | Path, model_name: str, *, use_ema: bool = False, to: Target = "safetensors"
) -> int:
    """Write ``src``'s weights as ``model_name``'s state dict to ``dst`` (safetensors), or its
    trunk in mmdetection's naming (``to="mmdet"``).

    Returns the number of classes of the written classifier (0: none written).
    """
    src, dst = Path(src), Path(dst)
    raw = read_checkpoint(src, use_ema=use_ema)
    num_classes = head_rows(raw.state, raw.format) or 0
    model = model_from_checkpoint(model_name, raw, cfg_of_file(model_name, raw), num_classes=num_classes)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if to == "mmdet":
        _write_mmdet(state, dst, model_name, model.pretrained_cfg.to_dict())
        return 0
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


def _write_mmdet(state: dict[str, torch.Tensor], dst: Path, model_name: str, cfg: dict[str, object]) -> None:
    """The trunk in mmdetection's naming, written atomically and checked by reading it back."""
    atomic_torch_save({"meta": {"res2net_model": model_name, "pretrained_cfg": cfg}, "state_dict": to_mmdet(state)},
                      dst)
    back = from_mmdet(read_state_dict(dst))
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if back.keys() != trunk.keys() or any(not torch.equal(back[k], v) for k, v in trunk.items()):
        dst.unlink(missing_ok=True)
        raise CheckpointError(f"{dst}: written file does not read back identically")


def run_convert(args: argparse.Namespace) -> int:
    """Entry point for the ``convert`` subcommand; returns the exit status."""
    num_classes = convert(args.src, args.dst, args.model, use_ema=args.ema, to=args.to)
    what = "backbone in mmdetection's naming" if args.to == "mmdet" else f"{num_classes} classes"
    print(f"wrote {args.dst}: {args.model}, {what}")
    return 0
