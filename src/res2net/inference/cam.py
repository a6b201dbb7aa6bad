"""Grad-CAM: where in the image the evidence for a class lies.

The class score's gradient with respect to a stage's feature map, averaged over space,
weights each channel; the ReLU of the weighted sum is the map (Selvaraju et al., 2017).
The paper uses the last stage. On a small input its map has too few cells to say where
anything is (a 32-pixel digit gives the stride-32 stage one cell, so the "map" is one
colour), so the deepest stage with at least ``MIN_CELLS`` cells a side is used: the
last stage from 224 pixels, stride 8 for a 32-pixel digit.
It needs the eager model (hooks and gradients), never the optimised one.
The heat map is drawn back onto the original image: the model saw only the centre crop,
so the map is placed over that crop's footprint in the original picture.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import UserError

OVERLAY_ALPHA = 0.5
#: Fewest cells a side of the feature map the heat map is read from (the last stage has 7 at 224 pixels).
MIN_CELLS = 4


def stages(model: nn.Module) -> list[nn.Module]:
    """The modules producing the model's feature maps, shallow to deep, from its feature_info."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise UserError(f"{type(model).__name__} has no feature_info; Grad-CAM needs a family backbone")
    return [model.get_submodule(entry.module) for entry in info]


def grad_cam(model: nn.Module, images: torch.Tensor, class_index: torch.Tensor | None = None) -> torch.Tensor:
    """Class activation maps ``(N, h, w)`` in [0, 1], at the resolution of the deepest stage whose map has at
    least ``MIN_CELLS`` cells a side (the shallowest stage when none has).

    ``class_index`` (N,) selects the class per image; default: each image's top-1.
    """
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    handles = [stage.register_forward_hook(keep) for stage in stages(model)]
    try:
        with torch.enable_grad():
            model.eval()
            logits = model(images.detach().requires_grad_(True))
            classes = logits.argmax(dim=1) if class_index is None else class_index.to(torch.long)
            logits.gather(1, classes.view(-1, 1)).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    readable = [f for f in captured if min(f.shape[-2:]) >= MIN_CELLS and f.grad is not None]
    features = readable[-1] if readable else captured[0]
    assert features.grad is not None  # every stage feeds the logits by construction
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1)).detach()
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    model.zero_grad(set_to_none=True)
    return cam / peak


def _colormap(values: np.ndarray) -> np.ndarray:
    """Blue (0) -> cyan -> yellow -> red (1), as uint8 RGB: the usual reading of a heat map."""
    channels = [np.clip(1.5 - np.abs(4.0 * values - centre), 0.0, 1.0) for centre in (3.0, 2.0, 1.0)]
    return (np.stack(channels, axis=-1) * 255.0).astype(np.uint8)


def overlay(image: Image.Image, cam: torch.Tensor, crop_pct: float) -> Image.Image:
    """``image`` (original size) with ``cam`` blended over the centre crop the model saw.

    The eval transform resizes the shorter side to ``size / crop_pct`` and keeps the
    centre ``size`` pixels, i.e. a centred square of side ``crop_pct * shorter side``.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    side = max(1, round(min(width, height) * crop_pct))
    left, top = (width - side) // 2, (height - side) // 2
    square = F.interpolate(cam[None, None].float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    heat = np.zeros((height, width), dtype=np.float32)
    heat[top : top + side, left : left + side] = square.clamp(0, 1).numpy()
    colours = _colormap(heat).astype(np.float32)
    base = np.asarray(rgb, dtype=np.float32)
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    alpha[top : top + side, left : left + side] = OVERLAY_ALPHA
    blended = base * (1.0 - alpha) + colours * alpha
    return Image.fromarray(blended.round().astype(np.uint8))
