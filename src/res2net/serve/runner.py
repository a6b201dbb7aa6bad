"""What the server needs from a model: preprocessing, a batched forward pass, and metadata.

The app and the batcher talk to a :class:`ModelRunner`, never to a model directly, so the
same server code drives a PyTorch module (:class:`TorchRunner`) and an ONNX export
(``res2net.serve.onnx_runner``), and tests can wrap a runner to observe or slow batches.
Runners are called from threads: ``preprocess`` from the request thread pool, ``__call__``
only from the batcher's single worker thread, which is what owns the model.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from .errors import RequestError

#: Pixels (width x height) above which an uploaded image is refused before decoding; a
#: small compressed file can otherwise expand to gigabytes (a "decompression bomb").
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Decoded pixels of all the images of one request together (RGB: 3 bytes each), read from the
#: images' headers before any is decoded.
DEFAULT_MAX_REQUEST_PIXELS = 64_000_000
#: Longest side over shortest side above which an image is refused: preprocessing scales the
#: *shorter* side to the input size, so a 1 x 40M-pixel strip would become gigabytes.
MAX_ASPECT_RATIO = 64

Preprocess = Callable[[list[Image.Image], Any], torch.Tensor]


@dataclass(frozen=True)
class RunnerInfo:
    """Metadata the server advertises and validates against."""

    input_size: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...] | None
    platform: str


class ModelRunner(Protocol):
    """A model behind the server; see the module docstring for the threading contract."""

    @property
    def info(self) -> RunnerInfo: ...

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Decoded RGB images -> float32 ``[N, *input_size]``."""
        ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 ``[N, *input_size]`` -> float32 logits ``[N, num_classes]``."""
        ...


class TorchRunner:
    """A classifier module (float32 in, logits out) plus the preprocessing it was trained with.

    The module may be eager PyTorch or one of ``res2net.inference``'s optimised wrappers
    (onnxruntime, bf16 oneDNN); ``platform`` is what the model metadata reports.

    ``preprocess_info`` is anything with ``input_size`` (``(C, H, W)``) and ``class_names``
    (``None`` or a sequence), typically ``res2net.inference``'s ``PreprocessInfo``;
    ``preprocess(images, preprocess_info)`` turns PIL images into the model's input batch.
    """

    def __init__(
        self, model: nn.Module, preprocess_info: Any, preprocess: Preprocess, *, platform: str = "pytorch",
        eager: nn.Module | None = None,
    ) -> None:
        self._model = model.eval()
        #: The eager PyTorch model ``model`` was optimised from, when there is one (the demo page's Grad-CAM).
        self.eager_model = eager
        self.preprocess_info = preprocess_info
        self._preprocess = preprocess
        input_size = _input_size(preprocess_info.input_size)
        num_classes = probe_num_classes(self, input_size)
        self._info = RunnerInfo(
            input_size=input_size,
            num_classes=num_classes,
            class_names=_class_names(preprocess_info.class_names, num_classes),
            platform=platform,
        )

    @property
    def info(self) -> RunnerInfo:
        return self._info

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self._preprocess(list(images), self.preprocess_info)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._model(batch).float()


#: Batch sizes run before the server reports ready. Two, because a compiled model (bf16)
#: builds one graph for batches of one and another for every larger batch: warming up both
#: keeps the ~15 s compilation out of the first request that gets batched with another.
WARM_UP_BATCH_SIZES = (1, 2)


def probe_num_classes(run: Callable[[torch.Tensor], torch.Tensor], input_size: tuple[int, int, int]) -> int:
    """Classes the model predicts, from forward passes on blank images.

    Asking the model rather than a wrapper attribute works for every form it is served in
    (plain, BN-folded, quantized, ONNX), and doubles as the warm-up (one pass per size in
    ``WARM_UP_BATCH_SIZES``) that proves the model runs before the server reports ready.
    """
    for rows in WARM_UP_BATCH_SIZES:
        logits = run(torch.zeros(rows, *input_size))
        if logits.ndim != 2 or logits.shape[0] != rows:
            raise ValueError(f"the model must return [N, num_classes] logits, got shape {list(logits.shape)}")
    return int(logits.shape[1])


_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_images(encoded: Sequence[bytes], *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                  max_total_pixels: int = DEFAULT_MAX_REQUEST_PIXELS) -> list[Image.Image]:
    """Encoded image files -> fully decoded RGB PIL images, or a 4xx naming the bad element.

    Every image's header is read first (no pixels decoded), so a request whose images would
    together decode to more than ``max_total_pixels`` is refused before it costs any memory.
    """
    opened = []
    total = 0
    for index, data in enumerate(encoded):
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:  # PIL's own guard, from the header, at twice its warning size
            raise RequestError(f"image[{index}] declares more pixels than Pillow opens; the limit is {max_pixels} "
                               "pixels", status=413) from None
        except _UNREADABLE as err:
            raise RequestError(f"image[{index}] could not be decoded as an image: {err}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise RequestError(f"image[{index}] is {width}x{height} pixels; the limit is {max_pixels} pixels",
                               status=413)
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise RequestError(
                f"image[{index}] is {width}x{height} pixels; aspect ratios beyond {MAX_ASPECT_RATIO}:1 are refused")
        total += width * height
        if total > max_total_pixels:
            raise RequestError(f"the request's images hold more than {max_total_pixels} pixels together "
                               "(--max-request-megapixels)", status=413)
        opened.append(image)
    images = []
    for index, image in enumerate(opened):
        try:
            images.append(image.convert("RGB"))
        except _UNREADABLE as err:
            raise RequestError(f"image[{index}] could not be decoded as an image: {err}") from None
    return images


def _input_size(size: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(dim) for dim in size)
    if len(dims) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {size!r}")
    return dims[0], dims[1], dims[2]


def _class_names(names: Sequence[str] | None, num_classes: int) -> tuple[str, ...] | None:
    """Class names only when they describe this classifier; a mismatch would mislabel results."""
    if names is None or len(names) != num_classes:
        return None
    return tuple(str(name) for name in names)
