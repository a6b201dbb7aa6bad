"""Colour jitter fused into the float conversion.

torchvision's ColorJitter on uint8 tensors converts to float, blends and rounds back to uint8 for
each of brightness, contrast and saturation: ~1 ms per 224x224 image here, more than the JPEG
decode. The same operations (same factor ranges, random order, clamping after each) done once
on the float tensor that normalisation needs anyway cost a fraction of that, and skip three
rounding steps. On a 224x224 image every whole-image pass costs ~7 us but every torch call
costs a few us of dispatch as well, so each operation is written as the fewest calls: a blend
is one ``lerp_``, the grey image one 1x3 matrix product, the contrast mean the channel means'
dot product, and the jitter runs on whichever scale (0-1 or 0-255) the caller already holds.
"""

from __future__ import annotations

import functools

import torch
from torchvision.transforms.v2 import functional as F

_GREY = (0.2989, 0.587, 0.114)


def _factor_range(value: float, name: str) -> tuple[float, float]:
    if value < 0:
        raise ValueError(f"color_jitter {name} must be >= 0, got {value}")
    return max(0.0, 1.0 - value), 1.0 + value


class FloatColorJitter:
    """Random brightness, contrast, saturation (and hue) on a float (3, H, W) image, in place.

    Factors are drawn uniformly from ``[max(0, 1 - v), 1 + v]`` (hue from ``[-v, v]``, v <= 0.5)
    and applied in a random order, like torchvision's ColorJitter. ``peak`` is the value of white
    (1.0 for images in [0, 1], 255.0 for images still on the 0-255 scale); an image in ``[0, peak]``
    stays in it after each operation, as torchvision clamps to [0, 1] after each.
    """

    def __init__(
        self, brightness: float, contrast: float, saturation: float, hue: float = 0.0, *, peak: float = 1.0
    ) -> None:
        if not 0 <= hue <= 0.5:
            raise ValueError(f"color_jitter hue must be in [0, 0.5], got {hue}")
        if peak <= 0:
            raise ValueError(f"peak must be positive, got {peak}")
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = hue
        self.peak = peak

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        # A factor <= 1 scales towards 0 or blends towards a grey value within [0, peak] (the luma
        # weights sum to 0.9999), so the result is in range already and its clamp is skipped.
        peak = self.peak
        for op in torch.randperm(4).tolist():
            if op == 0 and self.brightness != (1.0, 1.0):
                factor = self._draw(self.brightness)
                image.mul_(factor)
                if factor > 1.0:
                    image.clamp_max_(peak)
            elif op == 1 and self.contrast != (1.0, 1.0):
                factor = self._draw(self.contrast)
                image.lerp_(_grey_mean(image), 1.0 - factor)
                if factor > 1.0:
                    image.clamp_(0.0, peak)
            elif op == 2 and self.saturation != (1.0, 1.0):
                factor = self._draw(self.saturation)
                image.lerp_(_grey(image), 1.0 - factor)
                if factor > 1.0:
                    image.clamp_(0.0, peak)
            elif op == 3 and self.hue > 0:
                shift = float(torch.empty(()).uniform_(-self.hue, self.hue))
                image.copy_(F.adjust_hue(image.div(peak), shift)).mul_(peak)
        return image

    @staticmethod
    def _draw(bounds: tuple[float, float]) -> float:
        return float(torch.empty(()).uniform_(bounds[0], bounds[1]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


@functools.cache
def _grey_weights(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(_GREY, dtype=dtype, device=device)


def _grey(image: torch.Tensor) -> torch.Tensor:
    """The (1, H, W) luma image (ITU-R 601, torchvision's weights), as one matrix product."""
    height, width = image.shape[-2:]
    return (_grey_weights(image.dtype, image.device) @ image.reshape(3, -1)).view(1, height, width)


def _grey_mean(image: torch.Tensor) -> torch.Tensor:
    """The luma image's mean (a 0-d tensor), from the channel means without forming the image."""
    return torch.dot(image.mean((1, 2)), _grey_weights(image.dtype, image.device))
