"""Image decoding for the input pipeline: encoded bytes in, uint8 CHW RGB tensors out.

Why the dataset hands the transforms *encoded* images instead of decoded ones: the first
transform (random-resized crop, or resize + centre crop) knows how large the output will be,
and with that knowledge a JPEG can be decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
scaling, which is cheaper than a full decode followed by a downscale, and where libjpeg-turbo 3
is installed a random-resized crop decodes only its box (:func:`decode_crop`,
:mod:`res2net.data.jpeg_region`).

JPEGs are decoded by simplejpeg (libjpeg-turbo's TurboJPEG API into a NumPy array), chosen by
measurement (``benchmarks/bench_dataloader.py`` times it against torchvision's and Pillow's decoders):
faster than both, with pixels identical to Pillow's at every scale (full and draft 1/2-1/8, 4:4:4
and 4:2:0), so the pipeline sees what timm's Pillow-based one sees.
Its interleaved (H, W, 3) output viewed as (3, H, W) is the layout torch's uint8 resize kernels
read fastest. Four-channel (CMYK,
YCCK) JPEGs and every other format go through Pillow, whose colour conversion the references use.
Everything stays uint8 until the final normalisation.

Any failure to read or decode is raised as :class:`ImageDecodeError`, so the dataset can skip
exactly those images without also swallowing programming errors in the transforms.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import simplejpeg
import torch
from PIL import Image, UnidentifiedImageError

from res2net.data import jpeg_region

_JPEG_MAGIC = b"\xff\xd8"
_DRAFT_FACTORS = (8, 4, 2)
# Start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class JpegFrame(NamedTuple):
    """What a JPEG's start-of-frame segment says: its size and number of colour components."""

    width: int
    height: int
    components: int


class ImageDecodeError(Exception):
    """An image file that cannot be read or decoded (corrupt, truncated, not an image)."""


@dataclass(frozen=True)
class EncodedImage:
    """The undecoded bytes of one image file plus its path (for error messages)."""

    path: Path
    data: bytes

    @classmethod
    def read(cls, path: Path) -> EncodedImage:
        """Read a file; unreadable files raise :class:`ImageDecodeError`."""
        try:
            return cls(path, path.read_bytes())
        except OSError as err:
            raise ImageDecodeError(f"{path}: {err.strerror or err}") from err

    @property
    def is_jpeg(self) -> bool:
        return self.data[:2] == _JPEG_MAGIC

    @functools.cached_property
    def jpeg_frame(self) -> JpegFrame | None:
        """The JPEG frame header, or None for other formats and JPEGs whose markers look odd.

        Read once per image: the crop step needs the size and the decoder the components.
        """
        return _jpeg_frame(self.data) if self.is_jpeg else None

    def size(self) -> tuple[int, int]:
        """(width, height) from the header only; no pixel data is decoded."""
        frame = self.jpeg_frame
        if frame is not None:
            return frame.width, frame.height
        with self._open() as img:
            return img.size

    def _open(self) -> Image.Image:
        try:
            return Image.open(io.BytesIO(self.data))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise ImageDecodeError(f"{self.path}: {err}") from err


ImageInput = EncodedImage | torch.Tensor | Image.Image


def _jpeg_frame(data: bytes) -> JpegFrame | None:
    """Read a JPEG's start-of-frame segment; None if the markers look odd.

    Walking the segment headers is ~10x cheaper than Pillow's ``Image.open`` (plugin probing,
    full header parse), which matters when it runs once per sample; Pillow remains the fallback.
    """
    pos = 2
    while pos + 10 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return JpegFrame(width, height, data[pos + 9]) if width and height else None
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # standalone markers carry no length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def draft_factor(size: tuple[int, int], needed: tuple[float, float]) -> int:
    """Largest DCT reduction (8, 4, 2 or 1) that keeps an image of ``size`` at least ``needed``.

    ``needed`` is the (width, height) the whole image must keep so that the region the caller
    will crop still has at least as many pixels as the output: a reduction never makes the
    pipeline upsample where it would otherwise have downsampled.
    """
    for factor in _DRAFT_FACTORS:
        if size[0] / factor >= needed[0] and size[1] / factor >= needed[1]:
            return factor
    return 1


def decode_rgb(image: ImageInput, reduce: int = 1) -> tuple[torch.Tensor, float]:
    """Decode to a uint8 (3, H, W) RGB tensor, optionally reduced by a JPEG draft factor.

    Returns the tensor and the scale actually applied (decoded width / original width), which
    callers use to map crop boxes chosen in original coordinates onto the decoded pixels.
    Tensors and Pillow images (for callers that decoded themselves) pass through at scale 1.
    """
    if isinstance(image, torch.Tensor):
        return _as_rgb_tensor(image), 1.0
    if isinstance(image, Image.Image):
        return _pil_to_tensor(image), 1.0
    frame = image.jpeg_frame
    if frame is not None and frame.components in (1, 3):
        return _decode_jpeg(image, frame, reduce)
    return _decode_pil(image, reduce)


def decode_crop(image: ImageInput, box: tuple[int, int, int, int], reduce: int = 1) -> torch.Tensor:
    """The uint8 (3, h, w) pixels of ``box`` = (top, left, h, w), given in the original image's
    coordinates, from the image decoded at 1/``reduce`` (the box scaled to match).

    JPEGs decode only that region where libjpeg-turbo 3 is installed (:mod:`res2net.data.jpeg_region`,
    same pixels); everything else is decoded whole and sliced. The result may be a strided view.
    """
    frame = image.jpeg_frame if isinstance(image, EncodedImage) else None
    if frame is not None and frame.components in (1, 3) and jpeg_region.available():
        scaled = (-(-frame.height // reduce), -(-frame.width // reduce))
        region = _scaled_box(box, scaled[1] / frame.width, scaled)
        pixels = jpeg_region.decode_region(image.data, region, reduce)
        if pixels is not None:
            return torch.from_numpy(pixels).permute(2, 0, 1)
    pixels, scale = decode_rgb(image, reduce)
    top, left, h, w = _scaled_box(box, scale, pixels.shape[1:])
    return pixels[:, top : top + h, left : left + w]


def _scaled_box(
    box: tuple[int, int, int, int], scale: float, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``box`` in the coordinates of the image decoded at ``scale`` (of size ``shape`` = (H, W)), kept inside it."""
    if scale == 1.0:
        return box
    top, left, h, w = box
    top, left = int(top * scale), int(left * scale)
    return top, left, max(1, min(round(h * scale), shape[0] - top)), max(1, min(round(w * scale), shape[1] - left))


def _decode_jpeg(image: EncodedImage, frame: JpegFrame, reduce: int) -> tuple[torch.Tensor, float]:
    """simplejpeg's decode at 1/``reduce`` scale (libjpeg rounds the reduced size up, as Pillow's draft does)."""
    try:
        pixels = simplejpeg.decode_jpeg(
            image.data, colorspace="RGB", min_width=-(-frame.width // reduce), min_height=-(-frame.height // reduce),
            min_factor=reduce,
        )
    except ValueError as err:
        raise ImageDecodeError(f"{image.path}: corrupt or truncated JPEG ({err})") from err
    return torch.from_numpy(pixels).permute(2, 0, 1), pixels.shape[1] / frame.width


def _decode_pil(image: EncodedImage, reduce: int) -> tuple[torch.Tensor, float]:
    img = image._open()
    original_width = img.size[0]
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning, palette transparency...) on odd but valid files.
            warnings.simplefilter("ignore")
            if reduce > 1 and img.format == "JPEG":
                img.draft("RGB", (img.size[0] // reduce, img.size[1] // reduce))
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"{image.path}: {err}") from err
    finally:
        img.close()
    return _pil_to_tensor(rgb), rgb.size[0] / original_width


def _pil_to_tensor(img: Image.Image) -> torch.Tensor:
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def _as_rgb_tensor(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a uint8 (C, H, W) tensor with 1 or 3 channels, got {tensor.dtype} {tuple(tensor.shape)}"
        )
    return tensor.expand(3, -1, -1) if tensor.shape[0] == 1 else tensor
