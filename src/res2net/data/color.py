"""Colour jitter fused into the float conversion.

torchvision's ColorJitter on uint8 tensors converts to float, blends and rounds back to uint8 for
each of brightness, contrast and saturation: ~1 ms per 224x224 image here, more than the JPEG
decode. The same operations (same factor ranges, random order, clamping after each) done once
on the float tensor that normalisation needs anyway cost a fraction of that, and skip three
rounding steps.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

_GREY = (0.2989, 0.587, 0.114)


def _factor_range(value: float, name: str) -> tuple[float, float]:
    if value < 0:
        raise ValueError(f"color_jitter {name} must be >= 0, got {value}")
    return max(0.0, 1.0 - value), 1.0 + value


class FloatColorJitter:
    """Random brightness, contrast, saturation (and hue) on a float (3, H, W) image in [0, 1], in place.

    Factors are drawn uniformly from ``[max(0, 1 - v), 1 + v]`` (hue from ``[-v, v]``, v <= 0.5)
    and applied in a random order, like torchvision's ColorJitter.
    """

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float = 0.0) -> None:
        if not 0 <= hue <= 0.5:
            raise ValueError(f"color_jitter hue must be in [0, 0.5], got {hue}")
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = hue

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        for op in torch.randperm(4).tolist():
            if op == 0 and self.brightness != (1.0, 1.0):
                image.mul_(self._draw(self.brightness)).clamp_(max=1.0)
            elif op == 1 and self.contrast != (1.0, 1.0):
                factor = self._draw(self.contrast)
                mean = float(_grey(image).mean())
                image.mul_(factor).add_((1.0 - factor) * mean).clamp_(0.0, 1.0)
            elif op == 2 and self.saturation != (1.0, 1.0):
                factor = self._draw(self.saturation)
                grey = _grey(image).mul_(1.0 - factor)
                image.mul_(factor).add_(grey).clamp_(0.0, 1.0)
            elif op == 3 and self.hue > 0:
                image.copy_(F.adjust_hue(image, float(torch.empty(()).uniform_(-self.hue, self.hue))))
        return image

    @staticmethod
    def _draw(bounds: tuple[float, float]) -> float:
        return float(torch.empty(()).uniform_(bounds[0], bounds[1]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


def _grey(image: torch.Tensor) -> torch.Tensor:
    grey = image[0] * _GREY[0]
    grey.add_(image[1], alpha=_GREY[1]).add_(image[2], alpha=_GREY[2])
    return grey.unsqueeze(0)
