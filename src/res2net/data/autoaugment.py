"""MindCV/timm-style ``auto_augment`` strings mapped onto torchvision's v2 policies.

Recipes written for MindCV (and timm) describe the policy as a dashed string such as
``randaug-m9-mstd0.5-inc1``; this module turns that string into torchvision's own
``RandAugment`` / ``AutoAugment`` / ``TrivialAugmentWide`` / ``AugMix`` so the augmentation
code we run is torchvision's, tuned for uint8 tensors, rather than a third re-implementation.

Magnitude scale: MindCV and timm express RandAugment magnitudes out of 10 (``m9`` = 90 % of
each operation's maximum); torchvision spreads ``num_magnitude_bins`` bins linearly between 0
and the same maxima. We use bins at a resolution of 0.1, so ``m9`` selects exactly 90 %, and
``mstd`` (Gaussian magnitude noise, uniform in [0, m] above 100) is re-drawn for every
operation, as in MindCV. torchvision's operations already grow in severity with magnitude
(posterize keeps fewer bits, solarize lowers its threshold), which is what ``inc1`` asks for;
``inc0`` (MindCV's default, where a few operations weaken as the magnitude grows) is accepted
and run with torchvision's increasing operations.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

from .policy import BINS_PER_LEVEL, LEVEL_DENOM, AutoAugmentPolicy, parse_policy

Transform = Callable[[torch.Tensor], torch.Tensor]
# MindCV's 3a: solarize at magnitude 5 of 10 (threshold 128), blur with a 3x3 kernel.
_SOLARIZE_THRESHOLD = 128
_BLUR_KERNEL = 3
_BLUR_SIGMA = (0.1, 2.0)


class NoisyRandAugment:
    """RandAugment whose magnitude is re-drawn per operation (MindCV's ``mstd``).

    torchvision's RandAugment applies one fixed magnitude; holding one single-op instance per
    magnitude bin lets us pick the bin per operation without mutating shared state.
    """

    def __init__(
        self,
        *,
        num_ops: int,
        magnitude: float,
        magnitude_std: float,
        magnitude_max: float,
        interpolation: InterpolationMode,
        fill: Sequence[int],
    ) -> None:
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.magnitude_std = magnitude_std
        self.magnitude_max = magnitude_max
        bins = LEVEL_DENOM * BINS_PER_LEVEL + 1
        self._ops = [
            v2.RandAugment(
                num_ops=1, magnitude=level, num_magnitude_bins=bins, interpolation=interpolation, fill=list(fill)
            )
            for level in range(bins)
        ]

    def _draw_level(self) -> int:
        magnitude = self.magnitude
        if math.isinf(self.magnitude_std):
            magnitude = float(torch.rand(())) * magnitude
        elif self.magnitude_std > 0:
            magnitude = magnitude + float(torch.randn(())) * self.magnitude_std
        magnitude = min(max(magnitude, 0.0), self.magnitude_max)
        return round(magnitude * BINS_PER_LEVEL)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_ops):
            image = self._ops[self._draw_level()](image)
        return image

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"magnitude_std={self.magnitude_std}, magnitude_max={self.magnitude_max})"
        )


def parse_auto_augment(spec: str, *, interpolation: InterpolationMode, fill: Sequence[int]) -> Transform:
    """Build the torchvision policy an ``auto_augment`` string describes (see :func:`parse_policy`)."""
    return build_auto_augment(parse_policy(spec), interpolation=interpolation, fill=fill)


def build_auto_augment(
    policy: AutoAugmentPolicy, *, interpolation: InterpolationMode, fill: Sequence[int]
) -> Transform:
    """The transform for an already parsed policy."""
    spec = policy.spec
    if policy.name == "randaug":
        mstd = policy.get("mstd", 0.5)
        return NoisyRandAugment(
            num_ops=int(policy.get("n", 2)),
            magnitude=policy.get("m", LEVEL_DENOM),
            magnitude_std=math.inf if mstd > 100 else mstd,
            magnitude_max=policy.get("mmax", LEVEL_DENOM),
            interpolation=interpolation,
            fill=fill,
        )
    if policy.name in ("autoaug", "3a") and policy.get("mstd", 0.0) > 0:
        warnings.warn(
            f"auto_augment {spec!r}: the {policy.name} policy uses fixed magnitudes here; mstd is ignored",
            stacklevel=3,
        )
    if policy.name == "autoaug":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=interpolation, fill=list(fill))
    if policy.name == "3a":
        return three_augment()
    if policy.name == "trivialaugwide":
        bins = int(policy.get("m", 31))
        return v2.TrivialAugmentWide(num_magnitude_bins=bins, interpolation=interpolation, fill=list(fill))
    return v2.AugMix(
        severity=int(policy.get("m", 3)),
        mixture_width=int(policy.get("w", 3)),
        chain_depth=int(policy.get("d", -1)),
        alpha=policy.get("a", 1.0),
        interpolation=interpolation,
        fill=list(fill),
    )


def three_augment() -> Transform:
    """DeiT III's "3-Augment" as MindCV's ``3a`` policy runs it: each image gets exactly one of
    solarize (threshold 128 of 255), full desaturation, or a 3x3 Gaussian blur with sigma drawn
    from [0.1, 2.0], chosen uniformly."""
    return v2.RandomChoice(
        [
            v2.RandomSolarize(_SOLARIZE_THRESHOLD, p=1.0),
            v2.Grayscale(num_output_channels=3),
            v2.GaussianBlur(_BLUR_KERNEL, sigma=_BLUR_SIGMA),
        ]
    )
