"""Pieces every backbone in the family shares: classifier head, feature metadata,
dilation schedule and weight initialisation.

Keeping them here means the ResNet-style and DLA-style networks expose exactly the
same interface (``forward_features``, ``forward_head``, ``reset_classifier``,
``feature_info``) without either inheriting the other's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .blocks import Bottle2neck
from .deform import DeformableConv2d

if TYPE_CHECKING:
    from .registry import PretrainedCfg

VALID_OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone can return: its channels, its stride w.r.t. the input
    and the submodule that produces it (the names detection libraries expect)."""

    channels: int
    reduction: int
    module: str


@dataclass(frozen=True)
class StageGeometry:
    """How one stage realises its nominal stride: as a stride, or as dilation."""

    stride: int
    first_dilation: int
    dilation: int


def stage_geometry(strides: tuple[int, ...], output_stride: int, stem_reduction: int) -> list[StageGeometry]:
    """Replace strides by dilation once the network reaches ``output_stride``.

    Detection and segmentation heads want denser feature maps (stride 8 or 16) while
    keeping the receptive field the pretrained weights expect; dilation does both.
    """
    if output_stride not in VALID_OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride}")
    geometry: list[StageGeometry] = []
    reduction = stem_reduction
    dilation = 1
    for stride in strides:
        first_dilation = dilation
        if stride > 1 and reduction >= output_stride:
            dilation *= stride
            stride = 1
        reduction *= stride
        geometry.append(StageGeometry(stride=stride, first_dilation=first_dilation, dilation=dilation))
    return geometry


def init_weights(model: nn.Module, *, zero_init_last: bool) -> None:
    """He initialisation for convolutions, identity BatchNorm, small normal classifier; the
    offset branches of deformable convolutions start at zero."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, DeformableConv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, DeformableConv2d):
            module.reset_offsets()
        elif zero_init_last and isinstance(module, Bottle2neck):
            module.zero_init_last()


class ClassifierBackbone(nn.Module):
    """Global average pool, dropout and a linear classifier named ``fc``.

    Subclasses build their trunk, set ``feature_info`` and implement
    ``forward_features`` and ``feature_stages``; the head and its resetting live here.
    """

    feature_info: list[FeatureInfo]
    #: What the weights are and how to use them (set by ``build_model`` / ``create_model``).
    pretrained_cfg: PretrainedCfg

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def feature_stages(self) -> list[list[str]]:
        """Submodule names making up each ``feature_info`` entry, in forward order."""
        raise NotImplementedError

    def first_stage_modules(self, count: int) -> list[str]:
        """Names of the submodules in the first ``count`` of the ``feature_stages()`` groups (the stem, then
        the stages): what fine-tuning (``freeze_stages``) and detection (``trainable_stages``) keep fixed."""
        return [name for names in self.feature_stages()[:count] for name in names]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the last feature map; ``pre_logits`` stops before the classifier."""
        x = self.head_drop(torch.flatten(self.global_pool(x), 1))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (0 removes it), e.g. before fine-tuning; the new rows have no
        names yet, and ``pretrained_cfg`` says so."""
        self.num_classes = num_classes
        if hasattr(self, "pretrained_cfg"):
            self.pretrained_cfg = self.pretrained_cfg.replace(num_classes=num_classes, label_names=None)
        device = next(self.parameters()).device
        if num_classes > 0:
            self.fc = nn.Linear(self.num_features, num_classes, device=device)
            nn.init.normal_(self.fc.weight, std=0.01)
            nn.init.zeros_(self.fc.bias)
        else:
            self.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
