"""The Res2Net family: architectures, the model tables and ``build_model``.

Weights are put into models one floor up, by :func:`res2net.create_model`.
"""

from __future__ import annotations

from res2net.lazy import lazy_exports

_EXPORTS = {
    "build_model": "build",
    "FeatureInfo": "common",
    "fit_label_names": "labels",
    "imagenet_classes_for": "labels",
    "imagenet_label_names": "labels",
    "names_for_rows": "labels",
    "REGISTRY": "registry",
    "Architecture": "registry",
    "ModelName": "registry",
    "PretrainedCfg": "registry",
    "get_architecture": "registry",
    "list_models": "registry",
    "list_pretrained": "registry",
    "register_model": "registry",
    "register_weights": "registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
