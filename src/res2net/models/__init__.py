"""The Res2Net family: architectures, the model tables and ``build_model``.

Weights are put into models one floor up, by :func:`res2net.create_model`.
"""

from .build import build_model
from .common import FeatureInfo
from .labels import fit_label_names, imagenet_classes_for, imagenet_label_names, names_for_rows
from .registry import (
    REGISTRY,
    Architecture,
    ModelName,
    PretrainedCfg,
    get_architecture,
    list_models,
    list_pretrained,
    register_model,
    register_weights,
)

__all__ = [
    "REGISTRY",
    "Architecture",
    "FeatureInfo",
    "ModelName",
    "PretrainedCfg",
    "build_model",
    "fit_label_names",
    "get_architecture",
    "imagenet_classes_for",
    "imagenet_label_names",
    "list_models",
    "list_pretrained",
    "names_for_rows",
    "register_model",
    "register_weights",
]
