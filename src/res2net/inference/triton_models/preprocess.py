"""Triton Python-backend model: encoded images (BYTES) -> the classifier's input tensor.

Written by ``res2net export --format triton`` with the model's preprocessing in
``preprocess.json`` beside it, and self-contained (Pillow and NumPy only), so that it runs in
NGC's Triton container without res2net installed: resize the shorter side to
``H / crop_pct`` with the weights' interpolation, centre-crop ``H x W``, scale to 0-1 and
normalise with the weights' mean and std, as ``res2net predict`` does. The Python-backend
classifier (``--runtime python``) imports :class:`Preprocessor` from a copy of this file.
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

    def __call__(self, data):
        image = Image.open(io.BytesIO(data)).convert("RGB")
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
        """A BYTES tensor's images as one float32 batch; OSError/ValueError for undecodable data."""
        return np.stack([self(bytes(item)) for item in np.asarray(encoded, dtype=object).reshape(-1)])


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
                error = pb_utils.TritonError(f"cannot decode image: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("input", batch)]))
        return responses
