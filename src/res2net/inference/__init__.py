"""Inference: the optimised fast path, preprocessing metadata, export, predict and Grad-CAM.

``optimize_for_inference`` turns any family model into a float32-in, float32-out module
on the fastest measured backend; ``load_inference_model`` does that from a model name and
weights and also returns the :class:`PreprocessInfo` (input size, normalisation, class
names, all from the model's ``pretrained_cfg``) that predict, export and the server share.
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "fold_batchnorm": "fold",
    "PRECISIONS": "optimize",
    "Precision": "optimize",
    "optimize_for_inference": "optimize",
    "PreprocessInfo": "session",
    "load_inference_model": "session",
    "load_model": "session",
    "preprocess_images": "session",
    "preprocess_info": "session",
    "read_labels_file": "session",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
