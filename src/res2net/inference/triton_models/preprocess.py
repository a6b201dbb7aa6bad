"""Triton Python-backend model: encoded images (BYTES) -> the classifier's input tensor.

Written by ``res2net export --format triton`` with the model's preprocessing in
``preprocess.json`` beside it, and self-contained (Pillow and NumPy only), so that it runs in
NGC's Triton container without res2net installed: resize the shorter side to
``H / crop_pct`` with the weights' interpolation, centre-crop ``H x W``, scale to 0-1 and
normalise with the weights' mean and std, as ``res2net predict`` does. Like ``res2net serve``,
it reads every image's header before decoding any, and refuses an image over
``max_image_pixels`` or a request whose images together exceed ``max_request_pixels``. The
Python-backend classifier (``--runtime python``) imports :class:`Preprocessor` from a copy of
this file.
"""

import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class Preprocessor:
    """The eval transform of ``preprocess.json`` on encoded image bytes."""

    def __init__(self, info_path):
        info = json.loads(Path(info_path).read_text())
        _, self.height, self.width = info["input_size"]
        self.crop_pct = info["crop_pct"]
        self.resample = _RESAMPLE.get(info["interpolation"], Image.BILINEAR)
        self.mean = np.asarray(info["mean"], dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(info["std"], dtype=np.float32).reshape(3, 1, 1)
        self.max_image_pixels = info.get("max_image_pixels", 40_000_000)
        self.max_request_pixels = info.get("max_request_pixels", 64_000_000)

    def __call__(self, image):
        image = image.convert("RGB")
        short = int(math.floor(self.height / self.crop_pct))
        width, height = image.size  # torchvision's Resize(short): the long side is truncated, not rounded
        size = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
        image = image.resize(size, self.resample)
        # torchvision's CenterCrop rounds the offsets
        left, top = int(round((image.width - self.width) / 2.0)), int(round((image.height - self.height) / 2.0))
        image = image.crop((left, top, left + self.width, top + self.height))
        array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return ((array - self.mean) / self.std).astype(np.float32)

    def batch(self, encoded):
        """A BYTES tensor's images as one float32 batch; OSError/ValueError for undecodable data or
        images over the pixel limits (checked from the headers before anything is decoded)."""
        try:
            opened = [Image.open(io.BytesIO(bytes(item))) for item in np.asarray(encoded, dtype=object).reshape(-1)]
        except Image.DecompressionBombError as exc:
            raise ValueError(str(exc)) from None
        total = 0
        for index, image in enumerate(opened):
            width, height = image.size
            if width * height > self.max_image_pixels:
                raise ValueError(f"image[{index}] is {width}x{height} pixels; the limit is {self.max_image_pixels}")
            total += width * height
        if total > self.max_request_pixels:
            raise ValueError(f"the request's images hold {total} pixels together; the limit is "
                             f"{self.max_request_pixels}")
        return np.stack([self(image) for image in opened])


def client_error(pb_utils, message):
    """A TritonError that Triton answers with 400 (INVALID_ARG, Python backend 23.08 and later), not 500."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        self.preprocess = Preprocessor(Path(__file__).with_name("preprocess.json"))

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                batch = self.preprocess.batch(pb_utils.get_input_tensor_by_name(request, "image").as_numpy())
            except (OSError, ValueError) as exc:
                error = client_error(pb_utils, f"cannot decode image: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("input", batch)]))
        return responses
