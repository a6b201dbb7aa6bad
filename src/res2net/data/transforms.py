"""Train and eval transforms (torchvision v2), shaped like MindCV's ``create_transforms``.

The pipelines take what the folder dataset yields (an :class:`EncodedImage`; decoded tensors and
Pillow images work too) and return a normalised float32 (3, S, S) tensor. They are fast because:

* the first step decodes *and* crops/resizes in one go, asking libjpeg for a 1/2-1/8 scale
  decode whenever the crop would still have at least the output's resolution
  (see :mod:`res2net.data.decode`);
* geometric steps and auto-augment work on uint8 tensors (torchvision's uint8 resize kernels are
  vectorised); colour jitter and normalisation are fused into the one float conversion
  (:mod:`res2net.data.color`);
* the resize reads and writes interleaved pixels, its fastest layout (see :func:`interleaved`).

Randomness comes only from torch's global generator, so seeding it per sample (the dataset does,
from the sampler's per-sample seeds) makes augmentation reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from res2net.data.autoaugment import parse_auto_augment
from res2net.data.color import FloatColorJitter
from res2net.data.decode import EncodedImage, ImageInput, decode_crop, decode_rgb, draft_factor
from res2net.data.stats import Stats, normalize_stats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875

_INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

ColorJitter = float | Sequence[float] | None
EraseValue = float | Sequence[float] | str


def interpolation_mode(name: str) -> InterpolationMode:
    """Map a recipe's ``interpolation`` name onto torchvision's mode."""
    try:
        return _INTERPOLATIONS[name.lower()]
    except KeyError:
        choices = ", ".join(_INTERPOLATIONS)
        raise ValueError(f"interpolation {name!r} is not supported (choose from {choices})") from None


def interleaved(pixels: torch.Tensor) -> torch.Tensor:
    """The same (3, H, W) image with its pixels stored interleaved (H, W, 3) and contiguous.

    torch's vectorised uint8 resize works on interleaved pixels: handed planar pixels, or an
    interleaved crop that is a strided view into a larger image, it makes its own copy more
    slowly than this one (random-resized crops of 500x375 photos to 224: 121 us against 164 us
    as views, ``benchmarks/bench_dataloader.py``). Decoded images are interleaved already, so
    only crops and planar tensors are copied. The resized image comes back interleaved;
    :class:`ToNormalizedFloat` makes it planar in the float conversion it does anyway, because
    the jitter and normalisation's per-channel operations run faster on planar pixels than on
    interleaved ones by more than that conversion costs.
    """
    return pixels.permute(1, 2, 0).contiguous().permute(2, 0, 1)


class RandomResizedCropDecode:
    """Decode + random-resized crop (Inception-style) in one step.

    The crop box is drawn on the header's size first, so the decoder can be told how much
    resolution the crop really needs, and (with libjpeg-turbo 3) which region to decode.
    """

    def __init__(
        self,
        size: int,
        *,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        interpolation: InterpolationMode,
    ) -> None:
        if not 0 < scale[0] <= scale[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"invalid crop scale {scale} or ratio {ratio}")
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation
        self._log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a crop covering a random area fraction and aspect ratio."""
        area = width * height
        for _ in range(10):
            target = area * float(torch.empty(()).uniform_(self.scale[0], self.scale[1]))
            aspect = math.exp(float(torch.empty(()).uniform_(*self._log_ratio)))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        # Fallback (rare: extreme ratios): the largest centred box within the ratio bounds.
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: ImageInput) -> torch.Tensor:
        width, height = _size(image)
        top, left, h, w = self.box(width, height)
        reduce = 1
        if isinstance(image, EncodedImage):
            reduce = draft_factor((width, height), (width * self.size / w, height * self.size / h))
        crop = interleaved(decode_crop(image, (top, left, h, w), reduce))
        return F.resize(crop, [self.size, self.size], interpolation=self.interpolation, antialias=True)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(size={self.size}, scale={self.scale}, ratio={self.ratio}, {self.interpolation.value})"


class ResizeCenterCropDecode:
    """Decode, resize the shorter side to ``size / crop_pct``, centre-crop ``size``.

    The resized geometry is computed from the original size, so decoding at a reduced scale
    (when the shorter side still covers the resize target) changes no output dimensions.
    """

    def __init__(self, size: int, *, crop_pct: float, interpolation: InterpolationMode) -> None:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.size = size
        self.crop_pct = crop_pct
        self.resize_to = math.floor(size / crop_pct)
        self.interpolation = interpolation

    def __call__(self, image: ImageInput) -> torch.Tensor:
        width, height = _size(image)
        short = min(width, height)
        new_w = self.resize_to if width == short else int(self.resize_to * width / short)
        new_h = self.resize_to if height == short else int(self.resize_to * height / short)
        reduce = 1
        if isinstance(image, EncodedImage):
            reduce = draft_factor((width, height), (new_w, new_h))
        pixels, _ = decode_rgb(image, reduce)
        pixels = F.resize(interleaved(pixels), [new_h, new_w], interpolation=self.interpolation, antialias=True)
        return F.center_crop(pixels, [self.size, self.size])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, crop_pct={self.crop_pct}, {self.interpolation.value})"


class ToNormalizedFloat:
    """uint8 (3, H, W) -> float32 ``(x / 255 - mean) / std``, with the colour jitter (if any) in between.

    One conversion and two in-place ops: the image stays on the 0-255 scale throughout, so the
    jitter (built with ``peak=255``) clamps to [0, 255] and the normalisation's constants absorb
    the 1/255. The result is planar (contiguous), whatever the layout of the input.
    """

    def __init__(self, mean: Stats, std: Stats, jitter: FloatColorJitter | None = None) -> None:
        if jitter is not None and jitter.peak != 255.0:
            raise ValueError(f"the jitter runs on the 0-255 scale and needs peak=255, got peak={jitter.peak}")
        self.mean = mean
        self.std = std
        self.jitter = jitter
        self._offset = torch.tensor(mean).mul_(255.0).view(3, 1, 1)
        self._scale = torch.tensor(std).mul_(255.0).reciprocal_().view(3, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        out = image.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        if self.jitter is not None:
            self.jitter(out)
        return out.sub_(self._offset).mul_(self._scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, jitter={self.jitter})"


class RandomErasing:
    """Random erasing (Zhong et al., 2017) on a normalised float (C, H, W) image, in place.

    With probability ``p`` a box covering a random fraction ``scale`` of the image, with a
    log-uniform aspect ratio from ``ratio``, is filled with ``value`` (one number, one per
    channel, or ``"random"``: standard-normal noise per pixel). A box that does not fit is
    redrawn up to ``max_attempts`` times, after which the image is left as it is: MindSpore's
    and torchvision's semantics, with MindCV's ``re_max_attempts`` honoured (torchvision fixes 10).
    """

    def __init__(
        self,
        p: float,
        *,
        scale: tuple[float, float],
        ratio: tuple[float, float],
        value: EraseValue = 0.0,
        max_attempts: int = 10,
    ) -> None:
        if not 0 <= p <= 1 or not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1] or max_attempts < 1:
            raise ValueError(f"invalid random erasing p={p}, scale={scale}, ratio={ratio}, attempts={max_attempts}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"re_value must be a number, one number per channel or 'random', got {value!r}")
        self.p = p
        self.scale = scale
        self.ratio = ratio
        self.value = value
        self.max_attempts = max_attempts
        self._log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def _fill(self, channels: int, h: int, w: int) -> torch.Tensor | float:
        if isinstance(self.value, str):
            return torch.randn(channels, h, w)
        if isinstance(self.value, int | float):
            return float(self.value)
        values = [float(v) for v in self.value]
        if len(values) not in (1, channels):
            raise ValueError(f"re_value needs 1 or {channels} values, got {values}")
        return torch.tensor(values).view(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        channels, height, width = image.shape[-3:]
        area = height * width
        for _ in range(self.max_attempts):
            target = area * float(torch.empty(()).uniform_(self.scale[0], self.scale[1]))
            aspect = math.exp(float(torch.empty(()).uniform_(*self._log_ratio)))
            h = round(math.sqrt(target * aspect))
            w = round(math.sqrt(target / aspect))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                image[..., top : top + h, left : left + w] = self._fill(channels, h, w)
                return image
        return image

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value!r}, "
            f"max_attempts={self.max_attempts})"
        )


def build_train_transform(
    *,
    image_size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 1.333),
    interpolation: str = "bilinear",
    hflip: float = 0.5,
    vflip: float = 0.0,
    color_jitter: ColorJitter = None,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
    re_scale: tuple[float, float] = (0.02, 0.33),
    re_ratio: tuple[float, float] = (0.3, 3.3),
    re_value: EraseValue = 0.0,
    re_max_attempts: int = 10,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[ImageInput], torch.Tensor]:
    """MindCV's ImageNet training pipeline: RandomResizedCrop, flips, colour or auto augment,
    normalise, random erasing. As in MindCV and timm, ``auto_augment`` replaces ``color_jitter``.
    """
    mode = interpolation_mode(interpolation)
    mean01, std01 = normalize_stats(mean, std)
    steps: list[Callable[..., torch.Tensor]] = [
        RandomResizedCropDecode(image_size, scale=tuple(scale), ratio=tuple(ratio), interpolation=mode)
    ]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(v2.RandomVerticalFlip(vflip))
    jitter = None
    if auto_augment:
        fill = [min(255, round(255 * v)) for v in mean01]
        steps.append(parse_auto_augment(auto_augment, interpolation=mode, fill=fill))
    elif color_jitter:
        jitter = FloatColorJitter(*_jitter_args(color_jitter), peak=255.0)
    steps.append(ToNormalizedFloat(mean01, std01, jitter))
    if re_prob > 0:
        steps.append(
            RandomErasing(
                re_prob, scale=tuple(re_scale), ratio=tuple(re_ratio), value=re_value, max_attempts=re_max_attempts
            )
        )
    return v2.Compose(steps)


def build_eval_transform(
    *,
    image_size: int,
    crop_pct: float = DEFAULT_CROP_PCT,
    interpolation: str = "bilinear",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[ImageInput], torch.Tensor]:
    """MindCV's eval pipeline: resize the shorter side to ``floor(image_size / crop_pct)``, centre crop, normalise."""
    mean01, std01 = normalize_stats(mean, std)
    return v2.Compose(
        [
            ResizeCenterCropDecode(image_size, crop_pct=crop_pct, interpolation=interpolation_mode(interpolation)),
            ToNormalizedFloat(mean01, std01),
        ]
    )


def _jitter_args(color_jitter: float | Sequence[float]) -> tuple[float, ...]:
    """A float means brightness = contrast = saturation (MindCV/timm); 3 or 4 values add hue last."""
    if isinstance(color_jitter, int | float):
        return (float(color_jitter),) * 3
    values = tuple(float(v) for v in color_jitter)
    if len(values) not in (3, 4):
        raise ValueError(f"color_jitter needs 1, 3 or 4 values (brightness, contrast, saturation[, hue]), got {values}")
    return values


def _size(image: ImageInput) -> tuple[int, int]:
    if isinstance(image, EncodedImage):
        return image.size()
    if isinstance(image, torch.Tensor):
        return int(image.shape[-1]), int(image.shape[-2])
    return image.size
