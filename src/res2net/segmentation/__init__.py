"""Res2Net for dense prediction: torchvision's DeepLabV3 / FCN, and salient-object detection."""

from .metrics import SaliencyMetrics, SegmentationMetrics
from .models import BUILDERS, SaliencyNet, deeplabv3_res2net, fcn_res2net, saliency_loss, sod_res2net

__all__ = [
    "BUILDERS",
    "SaliencyMetrics",
    "SaliencyNet",
    "SegmentationMetrics",
    "deeplabv3_res2net",
    "fcn_res2net",
    "saliency_loss",
    "sod_res2net",
]
