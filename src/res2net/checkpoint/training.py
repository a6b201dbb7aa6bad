"""Our training checkpoint: one versioned layout, written atomically, read with upgrades.

Everything a run needs to continue exactly (weights, EMA, optimizer, scaler, schedule, step,
RNG states, mixer) and everything a user of the weights needs (the recipe, the class names and
the :class:`~res2net.models.PretrainedCfg` derived from them) live in :class:`TrainingCheckpoint`.
Its :meth:`~TrainingCheckpoint.to_dict` is what ``torch.save`` writes; :func:`parse` reads any
version this package wrote (version 1 files, from before ``pretrained_cfg`` existed, are
upgraded on read) and refuses a newer one with a clear message instead of misreading it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from res2net.checkpoint.sniff import CheckpointFormat, format_of
from res2net.checkpoint.torchfile import load_torch_bytes, read_file
from res2net.data.stats import normalize_stats
from res2net.errors import CheckpointError
from res2net.models import PretrainedCfg, get_architecture

CHECKPOINT_FORMAT = "res2net-train"
CHECKPOINT_VERSION = 3
#: Source name our training runs give their weights in ``pretrained_cfg``.
TRAINING_SOURCE = "res2net"


@dataclass
class TrainingCheckpoint:
    """The state of a run after ``epoch`` epochs (``step`` optimizer steps)."""

    model_name: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    schedule: dict[str, Any]
    epoch: int
    step: int
    rng: dict[str, Any]
    config: dict[str, Any]
    class_names: list[str]
    pretrained_cfg: dict[str, Any]
    model_ema: dict[str, torch.Tensor] | None = None
    ema_updates: int = 0
    best_top1: float | None = None
    mixer: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    #: Where the run came from (res2net.provenance.environment(): date, command, commit, host, versions).
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **dataclasses.asdict(self)}

    def weights(self, use_ema: bool, path: Path) -> dict[str, torch.Tensor]:
        if not use_ema:
            return self.model
        if self.model_ema is None:
            raise CheckpointError(f"{path}: EMA weights were requested but the run kept no EMA (ema: False)")
        return self.model_ema


def recipe_pretrained_cfg(
    model_name: str, config: Mapping[str, Any], class_names: list[str], metrics: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None = None,
) -> PretrainedCfg:
    """What a run's weights carry: its class names, its recipe's eval transform, its val scores, and
    where they came from."""
    mean, std = normalize_stats(config["mean"], config["std"])
    size = int(config["image_resize"])
    return PretrainedCfg(
        architecture=get_architecture(model_name).name,
        source=TRAINING_SOURCE,
        top1=None if not metrics else metrics.get("top1"),
        top5=None if not metrics else metrics.get("top5"),
        num_classes=len(class_names),
        label_names=tuple(class_names),
        mean=mean,
        std=std,
        input_size=(int(config.get("in_channels", 3)), size, size),
        crop_pct=float(config["crop_pct"]),
        interpolation=str(config["interpolation"]),
        provenance=describe_provenance(provenance) if provenance else "",
    )


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """One line: when, with which command and code, on which machine and libraries."""
    versions = provenance.get("versions", {})
    return (f"trained {provenance.get('date', '?')} with `{provenance.get('command', '?')}` "
            f"({provenance.get('launcher', '?')}) at commit {provenance.get('commit') or 'unknown'}, on "
            f"{provenance.get('host', {}).get('cpu', '?')}, res2net {versions.get('res2net', '?')}, "
            f"torch {versions.get('torch', '?')}")


def is_training_checkpoint(obj: object) -> bool:
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


def parse(obj: object, path: Path) -> TrainingCheckpoint:
    """The checkpoint in ``obj`` (what ``torch.load`` returned), upgraded to the current layout."""
    if not is_training_checkpoint(obj):
        raise CheckpointError(f"{path} is not a res2net training checkpoint (cannot resume from it)")
    assert isinstance(obj, Mapping)
    version = obj.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: training checkpoint has no valid version ({version!r})")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer res2net (checkpoint version {version}; this one reads up to "
            f"{CHECKPOINT_VERSION}): upgrade the package to read it"
        )
    values = {k: v for k, v in obj.items() if k not in ("format", "version")}
    if version == 1:  # before pretrained_cfg: derive it as a version 2 writer would have
        values["pretrained_cfg"] = recipe_pretrained_cfg(
            values["model_name"], values["config"], values["class_names"], values.get("metrics")
        ).to_dict()
    try:
        return TrainingCheckpoint(**values)
    except TypeError as exc:
        raise CheckpointError(
            f"{path}: training checkpoint does not have the version {version} layout ({exc})"
        ) from None


def read_training_checkpoint(path: Path) -> TrainingCheckpoint:
    """Load one of our training checkpoints, or raise CheckpointError naming the file."""
    data = read_file(path)
    kind = format_of(data, path)
    if kind not in (CheckpointFormat.TORCH_ZIP, CheckpointFormat.TORCH_PICKLE):
        raise CheckpointError(
            f"{path} is a {kind.value} file, not a res2net training checkpoint (cannot resume from it)"
        )
    return parse(load_torch_bytes(data, path), path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a partial file under ``path``: written to a hidden
    temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_training_checkpoint(checkpoint: TrainingCheckpoint, path: Path) -> None:
    atomic_torch_save(checkpoint.to_dict(), path)
