"""The checkpoint of a detection / segmentation run, and the model it describes.

A file holds the builder's name and keyword arguments next to the weights, so
``res2net evaluate-detection`` and ``predict-detection`` rebuild the exact network (backbone,
DCN stages, anchors, output stride) from the file alone, without the recipe or the backbone's
original weights. Written atomically by the run's CheckpointManager, like classification's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint.torchfile import load_torch_bytes, read_file
from ..errors import CheckpointError
from .builders import build_by_name

DENSE_FORMAT = "res2net-dense"
DENSE_VERSION = 1
_REQUIRED = ("builder", "builder_kwargs", "model", "epoch", "step", "config", "class_names")


@dataclass
class DenseCheckpoint:
    """A dense-prediction run after ``epoch`` epochs (``step`` optimizer steps)."""

    builder: str
    builder_kwargs: dict[str, Any]
    model: dict[str, torch.Tensor]
    epoch: int
    step: int
    config: dict[str, Any]
    class_names: list[str]
    optimizer: dict[str, Any] = dataclasses.field(default_factory=dict)
    scaler: dict[str, Any] = dataclasses.field(default_factory=dict)
    rng: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    #: Where the run came from (res2net.provenance.environment()); readers of older files get None.
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": DENSE_FORMAT, "version": DENSE_VERSION, **dataclasses.asdict(self)}


def read_dense_checkpoint(path: Path) -> DenseCheckpoint:
    """Load a dense-task checkpoint, or raise CheckpointError saying what the file is instead."""
    path = Path(path)
    return dense_checkpoint_from(load_torch_bytes(read_file(path), path), path)


def is_dense_checkpoint(obj: object) -> bool:
    """Whether a loaded checkpoint file is one of a detection/segmentation run."""
    return isinstance(obj, dict) and obj.get("format") == DENSE_FORMAT


def dense_checkpoint_from(obj: object, path: Path) -> DenseCheckpoint:
    """A loaded file's contents as a DenseCheckpoint, or CheckpointError saying what the file is instead."""
    if not isinstance(obj, dict) or obj.get("format") != DENSE_FORMAT:
        kind = obj.get("format", "a plain state_dict") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} is not a res2net detection/segmentation checkpoint (found {kind}); "
                              "classification checkpoints go to validate.py / res2net predict")
    if obj.get("version") != DENSE_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')!r}; this res2net reads "
                              f"version {DENSE_VERSION}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: truncated or not written by res2net")
    fields = {f.name for f in dataclasses.fields(DenseCheckpoint)}
    return DenseCheckpoint(**{k: v for k, v in obj.items() if k in fields})


def model_from_dense_checkpoint(checkpoint: DenseCheckpoint, origin: Path) -> nn.Module:
    """The network the checkpoint was trained as, with its weights (strict)."""
    model = build_by_name(checkpoint.builder, {**checkpoint.builder_kwargs, "backbone_weights": None})
    result = model.load_state_dict(checkpoint.model, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{origin}: weights do not fit {checkpoint.builder}: missing "
                              f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model
