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

import difflib
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode

_LEVEL_DENOM = 10
_BINS_PER_LEVEL = 10
_SECTION = re.compile(r"^([a-z]+)(\d+(?:\.\d*)?)$")
_POLICIES = {
    "randaug": "randaug",
    "rand": "randaug",
    "autoaug": "autoaug",
    "autoaugr": "autoaug",
    "original": "autoaug",
    "originalr": "autoaug",
    "3a": "3a",
    "trivialaugwide": "trivialaugwide",
    "augmix": "augmix",
}
_OPTIONS = {
    "randaug": ("m", "n", "mstd", "mmax", "inc"),
    "autoaug": ("mstd",),
    "3a": ("mstd",),
    "trivialaugwide": ("m",),
    "augmix": ("m", "w", "d", "a"),
}

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
        bins = _LEVEL_DENOM * _BINS_PER_LEVEL + 1
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
        return round(magnitude * _BINS_PER_LEVEL)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_ops):
            image = self._ops[self._draw_level()](image)
        return image

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"magnitude_std={self.magnitude_std}, magnitude_max={self.magnitude_max})"
        )


@dataclass(frozen=True)
class AutoAugmentPolicy:
    """A parsed ``auto_augment`` string: the policy name and its numeric options, all checked.

    Parsing is separate from building so that a recipe's string is validated when the recipe is
    read (a typo must not surface hours later, when the first worker builds its transform).
    """

    name: str
    spec: str
    options: Mapping[str, float] = field(default_factory=dict)

    def get(self, key: str, default: float) -> float:
        return float(self.options.get(key, default))


def parse_policy(spec: str) -> AutoAugmentPolicy:
    """Parse and check an ``auto_augment`` string; ValueError naming the offending part.

    Accepted (sections after the name in any order, all optional):
      ``randaug-m<0..10>-n<ops>-mstd<std>-mmax<0..10>-inc<0|1>`` (timm's ``rand-...`` too; MindCV's
      defaults m10, n2, mstd0.5), ``autoaug`` / ``autoaugr`` (timm: ``original[r]``; ImageNet
      policy), ``3a`` (DeiT III's three-augment as MindCV defines it: one of solarize,
      greyscale or Gaussian blur per image), ``trivialaugwide-m<bins>``,
      ``augmix-m<severity>-w<width>-d<depth>-a<alpha>``.
    """
    name, options = _split(spec)
    policy = AutoAugmentPolicy(name=name, spec=spec, options=options)
    if name == "randaug":
        if policy.get("mmax", _LEVEL_DENOM) > _LEVEL_DENOM:
            raise ValueError(f"auto_augment {spec!r}: mmax above {_LEVEL_DENOM} exceeds torchvision's operation ranges")
        if not 0 <= policy.get("m", _LEVEL_DENOM) <= _LEVEL_DENOM:
            raise ValueError(f"auto_augment {spec!r}: magnitude m must be in 0..{_LEVEL_DENOM}")
        if policy.get("inc", 1) not in (0, 1):
            raise ValueError(f"auto_augment {spec!r}: inc must be 0 or 1")
        _as_int(spec, "n", policy.get("n", 2), minimum=1)
    elif name == "trivialaugwide":
        _as_int(spec, "m", policy.get("m", 31), minimum=2)
    elif name == "augmix":
        for option, default in (("m", 3), ("w", 3), ("d", 1)):
            _as_int(spec, option, policy.get(option, default), minimum=1)
        if policy.get("a", 1.0) <= 0:
            raise ValueError(f"auto_augment {spec!r}: alpha a must be > 0")
    return policy


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
            magnitude=policy.get("m", _LEVEL_DENOM),
            magnitude_std=math.inf if mstd > 100 else mstd,
            magnitude_max=policy.get("mmax", _LEVEL_DENOM),
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


def _split(spec: str) -> tuple[str, dict[str, float]]:
    valid = "randaug-m9-mstd0.5, autoaug, 3a, trivialaugwide, augmix-m3"
    parts = spec.strip().lower().split("-")
    name = _POLICIES.get(parts[0])
    if name is None:
        closest = difflib.get_close_matches(parts[0], _POLICIES, n=1, cutoff=0.0)
        hint = f" (did you mean '{closest[0]}'?)" if closest else ""
        raise ValueError(f"auto_augment {spec!r}: unknown policy {parts[0]!r}{hint}; examples of valid values: {valid}")
    options: dict[str, float] = {}
    for part in parts[1:]:
        match = _SECTION.match(part)
        if match is None or match.group(1) not in _OPTIONS[name]:
            allowed = ", ".join(_OPTIONS[name]) or "none"
            raise ValueError(f"auto_augment {spec!r}: unknown option {part!r} for {parts[0]} (options: {allowed})")
        options[match.group(1)] = float(match.group(2))
    return name, options


def _as_int(spec: str, key: str, value: float, *, minimum: int) -> int:
    if value != int(value) or value < minimum:
        raise ValueError(f"auto_augment {spec!r}: {key} must be an integer >= {minimum}")
    return int(value)
