"""Everything needed to go from a model name (plus weights) to predictions: the network,
its fast inference form, and how its inputs must be preprocessed and its outputs named.

Predict, export and the HTTP server all start here so that they agree on preprocessing
and class names; a mismatch there is the most common silent accuracy loss in deployment.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..checkpoint import read_state_dict
from ..checkpoint.formats import CheckpointFormat, detect_format
from ..checkpoint.remap import HEAD_WEIGHT, translate_name
from ..data import build_eval_transform, normalize_stats
from ..errors import CheckpointError, UserError
from ..models import PretrainedCfg, create_model, get_model_spec
from .optimize import Precision, optimize_for_inference

IMAGENET_CLASSES = 1000
BACKGROUND = "background"


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


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (package data)."""
    text = resources.files("res2net.data").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != IMAGENET_CLASSES:
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} names, expected {IMAGENET_CLASSES}")
    return names


def default_class_names(num_classes: int) -> list[str]:
    """ImageNet names for 1000 classes; MindCV's 1001-class heads put a background class
    at index 0; any other size gets neutral ``class_<i>`` names."""
    if num_classes == IMAGENET_CLASSES:
        return list(imagenet_class_names())
    if num_classes == IMAGENET_CLASSES + 1:
        return [BACKGROUND, *imagenet_class_names()]
    return [f"class_{i}" for i in range(num_classes)]


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


def _training_metadata(path: Path) -> dict[str, Any]:
    """``class_names`` and ``config`` from one of our training checkpoints; empty for
    other formats. Read with ``weights_only=True``, like the weights themselves, so a
    checkpoint from elsewhere cannot run code."""
    if detect_format(path) is not CheckpointFormat.TORCH_ZIP:
        return {}
    try:
        with path.open("rb") as handle:
            obj = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or unsafe: the weight loader reports it properly
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: obj[k] for k in ("class_names", "config") if k in obj}


def _checkpoint_num_classes(path: Path) -> int | None:
    """Rows of the checkpoint's classifier, in whatever naming the file uses."""
    for name, tensor in read_state_dict(path).items():
        if translate_name(name) == HEAD_WEIGHT:
            return int(tensor.shape[0])
    return None


def _pretrained_cfg(model_name: str, pretrained: bool | str) -> PretrainedCfg:
    """The weight file's preprocessing; without one, the model's default file's (all
    share ImageNet statistics), or ImageNet defaults for models without weights."""
    spec = get_model_spec(model_name)
    tag = pretrained if isinstance(pretrained, str) else spec.default_pretrained_tag
    if tag is None:
        return PretrainedCfg(tag="none", url="", sha256_prefix="", source="official", license="", top1=None)
    if tag not in spec.pretrained:
        tags = ", ".join(spec.pretrained)
        raise UserError(f"model {model_name} has no pretrained weights tagged {tag!r} (has: {tags})")
    return spec.pretrained[tag]


def _config_value(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def preprocess_for(
    model_name: str,
    checkpoint_path: str | Path | None = None,
    pretrained: bool | str = False,
    *,
    num_classes: int | None = None,
    labels_file: str | Path | None = None,
) -> PreprocessInfo:
    """Preprocessing and class names for ``model_name`` with the given weights.

    Precedence: a ``labels_file`` beats class names stored in the checkpoint, which beat
    the defaults for the classifier size (:func:`default_class_names`). A training
    checkpoint's ``config`` (``image_resize``, ``crop_pct``, ``interpolation``, ``mean``,
    ``std``) beats the registry's pretrained configuration. ``num_classes`` None means:
    from the checkpoint's classifier, else the pretrained file's, else 1000.
    """
    cfg = _pretrained_cfg(model_name, pretrained)
    input_size, crop_pct, interpolation = cfg.input_size, cfg.crop_pct, cfg.interpolation
    mean, std = cfg.mean, cfg.std
    stored_names: list[str] | None = None
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None:
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        meta = _training_metadata(path)
        if meta.get("class_names") is not None:
            stored_names = [str(n) for n in meta["class_names"]]
        config = meta.get("config")
        if config is not None:
            size = _config_value(config, "image_resize")
            input_size = (input_size[0], int(size), int(size)) if size else input_size
            crop_pct = float(_config_value(config, "crop_pct") or crop_pct)
            interpolation = str(_config_value(config, "interpolation") or interpolation)
            if _config_value(config, "mean") and _config_value(config, "std"):
                mean, std = normalize_stats(_config_value(config, "mean"), _config_value(config, "std"))
    if num_classes is None:
        if path is not None:
            num_classes = _checkpoint_num_classes(path) or (len(stored_names) if stored_names else IMAGENET_CLASSES)
        else:
            num_classes = cfg.num_classes if pretrained else IMAGENET_CLASSES
    if labels_file is not None:
        names = read_labels_file(labels_file)
        source = str(labels_file)
    elif stored_names is not None:
        names, source = stored_names, f"class names stored in {path}"
    else:
        names, source = default_class_names(num_classes), ""
    if len(names) != num_classes:
        raise UserError(f"{source} has {len(names)} class names but the model has {num_classes} classes")
    return PreprocessInfo(
        input_size=(int(input_size[0]), int(input_size[1]), int(input_size[2])),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        crop_pct=crop_pct,
        interpolation=interpolation,
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
    """The eager (un-optimised) model in eval mode and its preprocessing; Grad-CAM and
    export start from this one."""
    info = preprocess_for(
        model_name, checkpoint_path, pretrained, num_classes=num_classes, labels_file=labels_file
    )
    model = create_model(
        model_name, pretrained=pretrained, checkpoint_path=checkpoint_path, num_classes=info.num_classes
    )
    return model.eval(), info


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

    int8 needs ``calibration_images`` (preprocessed with the returned info's settings;
    :func:`preprocess_for` gives them before loading).
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
    """The data package's eval pipeline configured for ``info``."""
    if info.input_size[1] != info.input_size[2]:
        raise UserError(f"only square inputs are supported, got input_size {info.input_size}")
    return build_eval_transform(
        image_size=info.input_size[2],
        crop_pct=info.crop_pct,
        interpolation=info.interpolation,
        mean=info.mean,
        std=info.std,
    )


def preprocess_images(images: list[Image.Image], info: PreprocessInfo) -> torch.Tensor:
    """A float32 ``(N, C, H, W)`` batch: resize, centre crop and normalise each image."""
    if not images:
        raise ValueError("preprocess_images needs at least one image")
    transform = eval_transform(info)
    return torch.stack([transform(image.convert("RGB")) for image in images])
