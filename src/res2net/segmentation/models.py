"""Semantic segmentation on torchvision's heads, and salient-object detection, on Res2Net.

``deeplabv3_res2net`` and ``fcn_res2net`` are torchvision's ``DeepLabV3`` / ``FCN`` with their
own heads (ASPP, FCN head, the auxiliary FCN head on stage 3), fed by a dilated Res2Net:
output stride 8 keeps stages 3-4 at 1/8 of the input (the paper setting, ASPP rates 12/24/36),
16 keeps stage 4 at 1/16 (rates 6/12/18, 4x less compute in the head). ``sod_res2net`` is the
salient-object-detection design the Res2Net paper evaluates (a feature-pyramid decoder in the
PoolNet/PraNet line): every stage projected to a common width, fused top-down, and one
saliency logit per pixel.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead

from ..detection.backbone import Norm, StageTrunk, res2net_backbone

ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}


def _dilated_trunk(
    backbone: str, weights: str | Path | None, output_stride: int, trainable_stages: int, norm: Norm, aux: bool
) -> tuple[StageTrunk, int, int]:
    if output_stride not in ASPP_RATES:
        raise ValueError(f"segmentation output_stride must be 8 or 16, got {output_stride}")
    model = res2net_backbone(backbone, weights=weights, trainable_stages=trainable_stages, norm=norm,
                             output_stride=output_stride)
    last, third = model.feature_info[4], model.feature_info[3]
    layers = {last.module: "out", **({third.module: "aux"} if aux else {})}
    return StageTrunk(model, layers, trainable_stages), last.channels, third.channels


def deeplabv3_res2net(
    backbone: str = "res2net50_v1b",
    *,
    num_classes: int = 21,
    backbone_weights: str | Path | None = None,
    output_stride: int = 8,
    aux_loss: bool = True,
    trainable_stages: int = 5,
    norm: Norm = "bn",
) -> DeepLabV3:
    """torchvision's DeepLabV3 (ASPP head) on a dilated Res2Net; ``num_classes`` includes the
    background. Outputs ``{"out": logits, "aux": logits}`` at the input's size."""
    trunk, channels, aux_channels = _dilated_trunk(backbone, backbone_weights, output_stride, trainable_stages,
                                                   norm, aux_loss)
    head = DeepLabHead(channels, num_classes, ASPP_RATES[output_stride])
    return DeepLabV3(trunk, head, FCNHead(aux_channels, num_classes) if aux_loss else None)


def fcn_res2net(
    backbone: str = "res2net50_v1b",
    *,
    num_classes: int = 21,
    backbone_weights: str | Path | None = None,
    output_stride: int = 8,
    aux_loss: bool = True,
    trainable_stages: int = 5,
    norm: Norm = "bn",
) -> FCN:
    """torchvision's FCN head on a dilated Res2Net."""
    trunk, channels, aux_channels = _dilated_trunk(backbone, backbone_weights, output_stride, trainable_stages,
                                                   norm, aux_loss)
    return FCN(trunk, FCNHead(channels, num_classes), FCNHead(aux_channels, num_classes) if aux_loss else None)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SaliencyNet(nn.Module):
    """Stages 1-4 projected to ``width`` channels, fused from the coarsest down (upsample,
    add, 3x3 refine), predicted at stride 4 and upsampled: ``{"out": logits [N, 1, H, W]}``."""

    def __init__(self, trunk: StageTrunk, channels: Sequence[int], width: int = 64) -> None:
        super().__init__()
        self.backbone = trunk
        self.lateral = nn.ModuleList(_conv_bn_relu(c, width, 1) for c in channels)
        self.refine = nn.ModuleList(_conv_bn_relu(width, width, 3) for _ in channels)
        self.predict = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = list(self.backbone(x).values())
        fused = self.refine[-1](self.lateral[-1](features[-1]))
        for index in range(len(features) - 2, -1, -1):
            lateral = self.lateral[index](features[index])
            fused = F.interpolate(fused, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            fused = self.refine[index](lateral + fused)
        logits = F.interpolate(self.predict(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return OrderedDict(out=logits)


def sod_res2net(
    backbone: str = "res2net50_v1b",
    *,
    backbone_weights: str | Path | None = None,
    width: int = 64,
    trainable_stages: int = 5,
    norm: Norm = "bn",
) -> SaliencyNet:
    """The salient-object-detection model: a Res2Net with a top-down fusion decoder."""
    model = res2net_backbone(backbone, weights=backbone_weights, trainable_stages=trainable_stages, norm=norm)
    infos = model.feature_info[1:5]
    trunk = StageTrunk(model, {info.module: str(i) for i, info in enumerate(infos)}, trainable_stages)
    return SaliencyNet(trunk, [info.channels for info in infos], width)


def saliency_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft IoU (the PraNet / F3Net pairing): BCE is per pixel, IoU
    scores the map as a whole and keeps small objects from being drowned by background."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    intersection = (prob * target).sum(dim=(1, 2, 3))
    union = (prob + target - prob * target).sum(dim=(1, 2, 3))
    iou = 1.0 - (intersection + 1.0) / (union + 1.0)
    return bce + iou.mean()


BUILDERS = {"deeplabv3_res2net": deeplabv3_res2net, "fcn_res2net": fcn_res2net, "sod_res2net": sod_res2net}
