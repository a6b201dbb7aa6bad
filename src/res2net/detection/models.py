"""torchvision's detectors with a Res2Net FPN backbone: Faster R-CNN, Mask R-CNN and RetinaNet.

The detectors, heads, losses and box coding are torchvision's own; this module only builds
the backbone (:func:`res2net_fpn`) the way torchvision's ``resnet_fpn_backbone`` does for
ResNet, and hands the detector the preprocessing that the backbone's weights expect (the
``mean``/``std`` of their ``pretrained_cfg``) instead of torchvision's ImageNet constants.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from .backbone import Norm, StageTrunk, res2net_backbone

FPN_CHANNELS = 256
#: torchvision's defaults: one anchor size per pyramid level, three aspect ratios.
DEFAULT_ANCHOR_SIZES = (32, 64, 128, 256, 512)
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)


class Res2NetFPN(BackboneWithFPN):
    """``BackboneWithFPN`` whose trunk keeps frozen stages' BatchNorm in eval mode."""

    def __init__(
        self,
        backbone: nn.Module,
        returned_stages: Sequence[int],
        trainable_stages: int,
        extra_blocks: ExtraFPNBlock | None,
    ) -> None:
        infos = [backbone.feature_info[i] for i in returned_stages]
        return_layers = {info.module: str(index) for index, info in enumerate(infos)}
        super().__init__(backbone, return_layers, [info.channels for info in infos], FPN_CHANNELS,
                         extra_blocks=extra_blocks)
        self.body = StageTrunk(backbone, return_layers, trainable_stages)
        self.pretrained_cfg = backbone.pretrained_cfg


def res2net_fpn(
    backbone: str = "res2net50_v1b",
    *,
    backbone_weights: str | Path | None = None,
    trainable_stages: int = 3,
    norm: Norm = "frozen",
    dcn_stages: Sequence[bool] | None = None,
    returned_stages: Sequence[int] = (1, 2, 3, 4),
    extra_blocks: ExtraFPNBlock | None = None,
) -> Res2NetFPN:
    """A Res2Net trunk with torchvision's FPN on the stages ``returned_stages`` (1: stride 4 ...
    4: stride 32); ``extra_blocks`` defaults to the max-pooled P6 of Faster/Mask R-CNN."""
    trunk = res2net_backbone(backbone, weights=backbone_weights, trainable_stages=trainable_stages, norm=norm,
                             dcn_stages=dcn_stages)
    return Res2NetFPN(trunk, returned_stages, trainable_stages,
                      LastLevelMaxPool() if extra_blocks is None else extra_blocks)


def _anchors(sizes: Sequence[int], aspect_ratios: Sequence[float], *, per_level: int = 1) -> AnchorGenerator:
    """One size per pyramid level (RetinaNet: ``per_level`` octave scales of it)."""
    scales = [2 ** (i / per_level) for i in range(per_level)]
    return AnchorGenerator(
        tuple(tuple(round(size * s) for s in scales) for size in sizes),
        tuple(tuple(aspect_ratios) for _ in sizes),
    )


def _normalisation(body: Res2NetFPN, kwargs: dict[str, Any]) -> dict[str, Any]:
    cfg = body.pretrained_cfg
    return {"image_mean": list(cfg.mean), "image_std": list(cfg.std), **kwargs}


D = TypeVar("D", FasterRCNN, MaskRCNN)


def _two_stage(
    detector: type[D], backbone: str, num_classes: int, backbone_weights: str | Path | None, trainable_stages: int,
    norm: Norm, dcn_stages: Sequence[bool] | None, anchor_sizes: Sequence[int], aspect_ratios: Sequence[float],
    torchvision_kwargs: dict[str, Any],
) -> D:
    """Faster or Mask R-CNN (the same construction) on a Res2Net FPN with one anchor size per level."""
    body = res2net_fpn(backbone, backbone_weights=backbone_weights, trainable_stages=trainable_stages, norm=norm,
                       dcn_stages=dcn_stages)
    return detector(body, num_classes=num_classes, rpn_anchor_generator=_anchors(anchor_sizes, aspect_ratios),
                    **_normalisation(body, torchvision_kwargs))


def fasterrcnn_res2net_fpn(
    backbone: str = "res2net50_v1b",
    *,
    num_classes: int = 91,
    backbone_weights: str | Path | None = None,
    trainable_stages: int = 3,
    norm: Norm = "frozen",
    dcn_stages: Sequence[bool] | None = None,
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    **torchvision_kwargs: Any,
) -> FasterRCNN:
    """torchvision's Faster R-CNN on a Res2Net FPN; ``num_classes`` counts the background.

    ``torchvision_kwargs`` go to :class:`torchvision.models.detection.FasterRCNN`
    (``min_size``, ``max_size``, ``box_batch_size_per_image``, ...).
    """
    return _two_stage(FasterRCNN, backbone, num_classes, backbone_weights, trainable_stages, norm, dcn_stages,
                      anchor_sizes, aspect_ratios, torchvision_kwargs)


def maskrcnn_res2net_fpn(
    backbone: str = "res2net50_v1b",
    *,
    num_classes: int = 91,
    backbone_weights: str | Path | None = None,
    trainable_stages: int = 3,
    norm: Norm = "frozen",
    dcn_stages: Sequence[bool] | None = None,
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    **torchvision_kwargs: Any,
) -> MaskRCNN:
    """torchvision's Mask R-CNN on a Res2Net FPN (boxes and instance masks)."""
    return _two_stage(MaskRCNN, backbone, num_classes, backbone_weights, trainable_stages, norm, dcn_stages,
                      anchor_sizes, aspect_ratios, torchvision_kwargs)


def retinanet_res2net_fpn(
    backbone: str = "res2net50_v1b",
    *,
    num_classes: int = 91,
    backbone_weights: str | Path | None = None,
    trainable_stages: int = 3,
    norm: Norm = "frozen",
    dcn_stages: Sequence[bool] | None = None,
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    **torchvision_kwargs: Any,
) -> RetinaNet:
    """torchvision's RetinaNet on a Res2Net FPN: stages 2-4 plus P6/P7 computed from P5, three
    octave scales per anchor size, as torchvision's ``retinanet_resnet50_fpn``."""
    body = res2net_fpn(backbone, backbone_weights=backbone_weights, trainable_stages=trainable_stages, norm=norm,
                       dcn_stages=dcn_stages, returned_stages=(2, 3, 4),
                       extra_blocks=LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS))
    return RetinaNet(body, num_classes=num_classes, anchor_generator=_anchors(anchor_sizes, aspect_ratios, per_level=3),
                     **_normalisation(body, torchvision_kwargs))


BUILDERS = {
    "fasterrcnn_res2net_fpn": fasterrcnn_res2net_fpn,
    "maskrcnn_res2net_fpn": maskrcnn_res2net_fpn,
    "retinanet_res2net_fpn": retinanet_res2net_fpn,
}
