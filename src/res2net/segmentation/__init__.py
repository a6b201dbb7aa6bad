"""Res2Net for dense prediction: torchvision's DeepLabV3 / FCN, and salient-object detection."""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "SaliencyMetrics": "metrics",
    "SegmentationMetrics": "metrics",
    "BUILDERS": "models",
    "SaliencyNet": "models",
    "deeplabv3_res2net": "models",
    "fcn_res2net": "models",
    "saliency_loss": "models",
    "sod_res2net": "models",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
