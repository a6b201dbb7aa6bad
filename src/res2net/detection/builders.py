"""Every dense-task builder by name, and the keyword arguments a recipe gives each.

One table so that a recipe, a checkpoint and the Python API name models the same way; the
checkpoint stores ``(name, kwargs)`` from here and rebuilds through :func:`build_by_name`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..segmentation.models import BUILDERS as SEGMENTATION_BUILDERS
from .config import DetectionConfig
from .models import BUILDERS as DETECTION_BUILDERS

BUILDERS: dict[str, Callable[..., nn.Module]] = {**DETECTION_BUILDERS, **SEGMENTATION_BUILDERS}


def build_by_name(name: str, kwargs: dict[str, Any]) -> nn.Module:
    return BUILDERS[name](**kwargs)


def builder_kwargs(cfg: DetectionConfig, num_classes: int) -> dict[str, Any]:
    """The recipe's arguments for its builder (plain values, saved in checkpoints)."""
    common: dict[str, Any] = {"backbone_weights": cfg.backbone_weights or None,
                              "trainable_stages": cfg.trainable_stages, "norm": cfg.norm}
    if cfg.task in ("detection", "instance"):
        detector = {"backbone": cfg.backbone, "num_classes": num_classes, **common,
                    "dcn_stages": list(cfg.dcn_stages), "anchor_sizes": list(cfg.anchor_sizes),
                    "aspect_ratios": list(cfg.aspect_ratios), "min_size": cfg.min_size, "max_size": cfg.max_size}
        if cfg.model == "retinanet_res2net_fpn":  # one-stage: no RoI sampling
            return {**detector, "score_thresh": cfg.score_threshold}
        return {**detector, "box_batch_size_per_image": cfg.box_batch_size_per_image,
                "box_score_thresh": cfg.score_threshold}
    if cfg.task == "semantic":
        return {"backbone": cfg.backbone, "num_classes": num_classes, **common, "output_stride": cfg.output_stride,
                "aux_loss": cfg.aux_loss}
    return {"backbone": cfg.backbone, **common}
