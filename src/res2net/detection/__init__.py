"""Res2Net as the backbone of torchvision's detectors (Faster R-CNN, Mask R-CNN, RetinaNet)."""

from .backbone import freeze_batch_norm, res2net_backbone
from .models import (
    BUILDERS,
    Res2NetFPN,
    fasterrcnn_res2net_fpn,
    maskrcnn_res2net_fpn,
    res2net_fpn,
    retinanet_res2net_fpn,
)

__all__ = [
    "BUILDERS",
    "Res2NetFPN",
    "fasterrcnn_res2net_fpn",
    "freeze_batch_norm",
    "maskrcnn_res2net_fpn",
    "res2net_backbone",
    "res2net_fpn",
    "retinanet_res2net_fpn",
]
