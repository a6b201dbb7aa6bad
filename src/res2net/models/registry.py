"""The model table: every name the package knows, its architecture arguments and the
published weights for it.

Variants are rows, not code. Names cover the paper's (``res2net50_26w_4s``...),
MindCV's (``res2net50``, ``res2net50_v1b``...) and timm's aliases (``res2net50d``...).
Each published weight file carries what a user needs to use it correctly: where it
comes from, how to check it, how to preprocess for it and what it is reported to score.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

OFFICIAL_BASE_URL = "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/"
MINDCV_BASE_URL = "https://download.mindspore.cn/toolkits/mindcv/res2net/"
OFFICIAL_LICENSE = "unknown: no license is stated for the released weights (https://github.com/gasvn/Res2Net)"
MINDCV_LICENSE = "Apache-2.0 (MindCV)"

Architecture = Literal["res2net", "res2net_dla"]


@dataclass(frozen=True)
class PretrainedCfg:
    """One published weight file and how to use it."""

    tag: str
    url: str
    sha256_prefix: str
    source: Literal["official", "mindcv"]
    license: str
    top1: float | None
    top5: float | None = None
    num_classes: int = 1000
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelSpec:
    """A named network: which architecture, with which arguments, and its weights."""

    name: str
    architecture: Architecture
    kwargs: dict[str, Any]
    description: str
    pretrained: dict[str, PretrainedCfg] = field(default_factory=dict)

    @property
    def default_pretrained_tag(self) -> str | None:
        return next(iter(self.pretrained), None)


def _published(
    source: Literal["official", "mindcv"], base_url: str, license_text: str, file_name: str, **fields: Any
) -> dict[str, PretrainedCfg]:
    """One released file; its name ends in ``-<sha256 prefix>.<ext>``, as both projects name them."""
    sha = file_name.rsplit("-", 1)[-1].split(".")[0]
    cfg = PretrainedCfg(
        tag=source, url=base_url + file_name, sha256_prefix=sha, source=source, license=license_text, **fields
    )
    return {source: cfg}


def _official(file_name: str, top1: float) -> dict[str, PretrainedCfg]:
    return _published("official", OFFICIAL_BASE_URL, OFFICIAL_LICENSE, file_name, top1=top1)


def _mindcv(file_name: str, top1: float, top5: float) -> dict[str, PretrainedCfg]:
    """MindCV's ImageNet weights: a 1001-class head whose first 1000 outputs are the
    ImageNet classes (the last is never trained), and 0-255 inputs normalised with ImageNet
    statistics, which equals ours after scaling."""
    return _published("mindcv", MINDCV_BASE_URL, MINDCV_LICENSE, file_name, top1=top1, top5=top5, num_classes=1001)


LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
V1B = {"stem_type": "deep", "shortcut_type": "avgpool"}


def _res2net(depth: int, base_width: int = 26, scale: int = 4, **extra: Any) -> dict[str, Any]:
    return {"layers": LAYERS[depth], "base_width": base_width, "scale": scale, **extra}


_SPECS: list[ModelSpec] = [
    # The paper's ResNet-layout networks, with the authors' weights (paper top-1 = 100 - error).
    ModelSpec("res2net50_26w_4s", "res2net", _res2net(50), "Res2Net-50, 26w x 4s",
              _official("res2net50_26w_4s-06e79181.pth", 77.99)),
    ModelSpec("res2net50_48w_2s", "res2net", _res2net(50, 48, 2), "Res2Net-50, 48w x 2s",
              _official("res2net50_48w_2s-afed724a.pth", 77.32)),
    ModelSpec("res2net50_14w_8s", "res2net", _res2net(50, 14, 8), "Res2Net-50, 14w x 8s",
              _official("res2net50_14w_8s-6527dddc.pth", 78.14)),
    ModelSpec("res2net50_26w_6s", "res2net", _res2net(50, 26, 6), "Res2Net-50, 26w x 6s",
              _official("res2net50_26w_6s-19041792.pth", 78.58)),
    ModelSpec("res2net50_26w_8s", "res2net", _res2net(50, 26, 8), "Res2Net-50, 26w x 8s",
              _official("res2net50_26w_8s-2c7c9f12.pth", 79.20)),
    ModelSpec("res2net101_26w_4s", "res2net", _res2net(101), "Res2Net-101, 26w x 4s",
              _official("res2net101_26w_4s-02a759a1.pth", 79.19)),
    ModelSpec("res2net50_v1b_26w_4s", "res2net", _res2net(50, **V1B), "Res2Net-50 v1b (deep stem, avg-pool shortcut)",
              _official("res2net50_v1b_26w_4s-3cf99910.pth", 80.28)),
    ModelSpec("res2net101_v1b_26w_4s", "res2net", _res2net(101, **V1B), "Res2Net-101 v1b",
              _official("res2net101_v1b_26w_4s-0812c246.pth", 81.24)),
    ModelSpec("res2net152_v1b_26w_4s", "res2net", _res2net(152, **V1B), "Res2Net-152 v1b (no published weights)"),
    ModelSpec("res2next50", "res2net", _res2net(50, 4, 4, cardinality=8), "Res2NeXt-50, 4w x 8c x 4s",
              _official("res2next50_4s-6ef7e7bf.pth", 78.24)),
    ModelSpec("res2net_dla60", "res2net_dla", {"base_width": 28, "cardinality": 1}, "Res2Net-DLA-60",
              _official("res2net_dla60_4s-d88db7f9.pth", 78.47)),
    ModelSpec("res2next_dla60", "res2net_dla", {"base_width": 4, "cardinality": 8}, "Res2NeXt-DLA-60",
              _official("res2next_dla60_4s-d327927b.pth", 78.45)),
    # MindCV's names, with MindCV's weights (the seed's table).
    ModelSpec("res2net50", "res2net", _res2net(50), "Res2Net-50 (MindCV name)",
              _mindcv("res2net50-f42cf71b.ckpt", 79.35, 94.64)),
    ModelSpec("res2net101", "res2net", _res2net(101), "Res2Net-101 (MindCV name)",
              _mindcv("res2net101-8ae60132.ckpt", 79.56, 94.70)),
    ModelSpec("res2net152", "res2net", _res2net(152), "Res2Net-152 (MindCV name, no published weights)"),
    ModelSpec("res2net50_v1b", "res2net", _res2net(50, **V1B), "Res2Net-50 v1b (MindCV name)",
              _mindcv("res2net50_v1b-99304e92.ckpt", 80.32, 95.09)),
    ModelSpec("res2net101_v1b", "res2net", _res2net(101, **V1B), "Res2Net-101 v1b (MindCV name)",
              _mindcv("res2net101_v1b-7e6db001.ckpt", 81.26, 95.41)),
    ModelSpec("res2net152_v1b", "res2net", _res2net(152, **V1B), "Res2Net-152 v1b (MindCV name, no published weights)"),
    # timm's names for the v1b-style networks; load timm's files with checkpoint_path.
    ModelSpec("res2net50d", "res2net", _res2net(50, **V1B), "Res2Net-50-D (timm name of the v1b network)"),
    ModelSpec("res2net101d", "res2net", _res2net(101, **V1B), "Res2Net-101-D (timm name of the v1b network)"),
]

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted model names, optionally filtered by a shell-style pattern (``res2net50*``)."""
    names = sorted(REGISTRY)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_model_spec(name: str) -> ModelSpec:
    """The registry row for ``name``; an unknown name is a UserError suggesting close ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise UserError(f"unknown model {name!r}{hint}; see res2net.list_models()") from None
