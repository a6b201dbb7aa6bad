"""From a model name (plus weights) to predictions: the network, its fast inference form, and
how its inputs are preprocessed and its outputs named.

Predict, export and the HTTP server start here. Everything comes from the model's
``pretrained_cfg``, which :func:`res2net.create_model` assembled while reading the weights
once; nothing here opens a checkpoint again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..data import create_transform, resolve_data_config
from ..errors import UserError
from ..factory import create_model
from ..models import names_for_rows
from .optimize import Precision, optimize_for_inference


@dataclass(frozen=True)
class PreprocessInfo:
    """How to turn an image into the model's input, and what its outputs mean.

    ``mean``/``std`` are on the 0-1 scale; ``input_size`` is ``(C, H, W)``; images are
    resized so the shorter side is ``H / crop_pct`` and centre-cropped.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float
    interpolation: str
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the export sidecar and the server's metadata use it)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def read_labels_file(path: str | Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"labels file {path} holds no class names")
    return names


def preprocess_info(model: nn.Module, labels_file: str | Path | None = None) -> PreprocessInfo:
    """The model's preprocessing and a name per classifier row (``labels_file`` overrides the
    names its weights carry)."""
    cfg = model.pretrained_cfg
    data = resolve_data_config(cfg)
    if labels_file is not None:
        names = read_labels_file(labels_file)
        if len(names) != cfg.num_classes:
            raise UserError(f"{labels_file} has {len(names)} class names but the model has {cfg.num_classes} classes")
    else:
        names = names_for_rows(cfg.label_names, cfg.num_classes)
    return PreprocessInfo(
        input_size=data.input_size,
        mean=data.mean,
        std=data.std,
        crop_pct=data.crop_pct,
        interpolation=data.interpolation,
        class_names=names,
    )


def load_model(
    model_name: str,
    *,
    checkpoint_path: str | Path | None = None,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    labels_file: str | Path | None = None,
) -> tuple[nn.Module, PreprocessInfo]:
    """The eager (un-optimised) model in eval mode and its preprocessing; Grad-CAM and export
    start from this one. ``num_classes`` None: the weights' own."""
    model = create_model(model_name, pretrained=pretrained, checkpoint_path=checkpoint_path, num_classes=num_classes)
    return model.eval(), preprocess_info(model, labels_file)


def load_inference_model(
    model_name: str,
    *,
    checkpoint_path: str | Path | None = None,
    pretrained: bool | str = False,
    precision: Precision = "fp32",
    num_classes: int | None = None,
    calibration_images: torch.Tensor | None = None,
    labels_file: str | Path | None = None,
) -> tuple[nn.Module, PreprocessInfo]:
    """The model passed through :func:`optimize_for_inference`, with its preprocessing.

    int8 needs ``calibration_images`` preprocessed as the returned info says; callers that must
    see the info first load with :func:`load_model` and optimise themselves.
    """
    model, info = load_model(
        model_name,
        checkpoint_path=checkpoint_path,
        pretrained=pretrained,
        num_classes=num_classes,
        labels_file=labels_file,
    )
    fast = optimize_for_inference(
        model, precision, calibration_images=calibration_images, example_input_size=info.input_size
    )
    return fast, info


def eval_transform(info: PreprocessInfo) -> Any:
    """The eval pipeline for ``info`` (:func:`res2net.create_transform`)."""
    return create_transform(info)


def preprocess_images(images: list[Image.Image], info: PreprocessInfo) -> torch.Tensor:
    """A float32 ``(N, C, H, W)`` batch: resize, centre crop and normalise each image."""
    if not images:
        raise ValueError("preprocess_images needs at least one image")
    transform = eval_transform(info)
    return torch.stack([transform(image.convert("RGB")) for image in images])
