"""Preprocessing from what the weights say: ``resolve_data_config`` and ``create_transform``.

A model's ``pretrained_cfg`` (or any object or mapping with the same fields) states the input
size, normalisation, resize interpolation and centre-crop fraction its weights were trained
with. Predict, validate, export's preprocessing JSON and the server all turn that into a
transform here, so they cannot disagree about it — a mismatch is the most common silent
accuracy loss in deployment. This module reads fields by name and does not depend on the
model package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from res2net.data.decode import ImageInput
from res2net.data.stats import Stats
from res2net.data.transforms import (
    DEFAULT_CROP_PCT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_train_transform,
)
from res2net.errors import UserError

_FIELDS = ("input_size", "mean", "std", "crop_pct", "interpolation")


@dataclass(frozen=True)
class DataConfig:
    """How images must be prepared for a model: ``(C, H, W)``, 0-1 mean/std, crop, interpolation."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: Stats = IMAGENET_MEAN
    std: Stats = IMAGENET_STD
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = "bilinear"


def resolve_data_config(model_or_cfg: Any) -> DataConfig:
    """The :class:`DataConfig` of a model (its ``pretrained_cfg``), a PretrainedCfg, a
    DataConfig-like object or a mapping with those fields (missing ones take the defaults)."""
    cfg = getattr(model_or_cfg, "pretrained_cfg", model_or_cfg)
    if isinstance(cfg, Mapping):
        values = {name: cfg[name] for name in _FIELDS if name in cfg}
    else:
        values = {name: getattr(cfg, name) for name in _FIELDS if hasattr(cfg, name)}
    if not values:
        raise UserError(f"cannot read preprocessing from {type(model_or_cfg).__name__}: it has no pretrained_cfg")
    for name in ("input_size", "mean", "std"):
        if name in values:
            values[name] = tuple(values[name])
    return DataConfig(**values)


def create_transform(
    model_or_cfg: Any, *, is_training: bool = False, **train_options: Any
) -> Callable[[ImageInput], torch.Tensor]:
    """The eval transform for ``model_or_cfg`` (resize the shorter side to ``size / crop_pct``,
    centre crop, normalise), or with ``is_training`` the training transform at the same size and
    normalisation (``train_options``: scale, ratio, hflip, color_jitter, auto_augment, re_prob...).
    Inputs: encoded image files, PIL images or uint8 tensors; output: float32 ``(C, H, W)``."""
    data = resolve_data_config(model_or_cfg)
    _, height, width = data.input_size
    if height != width:
        raise UserError(f"only square inputs are supported, got input_size {data.input_size}")
    if is_training:
        return build_train_transform(
            image_size=width, interpolation=data.interpolation, mean=data.mean, std=data.std, **train_options
        )
    if train_options:
        raise TypeError(f"training options {sorted(train_options)} need is_training=True")
    return build_eval_transform(
        image_size=width, crop_pct=data.crop_pct, interpolation=data.interpolation, mean=data.mean, std=data.std
    )
