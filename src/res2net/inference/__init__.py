"""Inference: the optimised fast path, preprocessing metadata, export, predict and Grad-CAM.

``optimize_for_inference`` turns any family model into a float32-in, float32-out module
on the fastest measured backend; ``load_inference_model`` does that from a model name and
weights and also returns the :class:`PreprocessInfo` (input size, normalisation, class
names, all from the model's ``pretrained_cfg``) that predict, export and the server share.
"""

from .fold import fold_batchnorm
from .optimize import PRECISIONS, Precision, optimize_for_inference
from .session import (
    PreprocessInfo,
    load_inference_model,
    load_model,
    preprocess_images,
    preprocess_info,
    read_labels_file,
)

__all__ = [
    "PRECISIONS",
    "Precision",
    "PreprocessInfo",
    "fold_batchnorm",
    "load_inference_model",
    "load_model",
    "optimize_for_inference",
    "preprocess_images",
    "preprocess_info",
    "read_labels_file",
]
