"""Res2Net as the backbone of torchvision's detectors (Faster R-CNN, Mask R-CNN, RetinaNet)."""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "freeze_batch_norm": "backbone",
    "res2net_backbone": "backbone",
    "BUILDERS": "models",
    "Res2NetFPN": "models",
    "fasterrcnn_res2net_fpn": "models",
    "maskrcnn_res2net_fpn": "models",
    "res2net_fpn": "models",
    "retinanet_res2net_fpn": "models",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
