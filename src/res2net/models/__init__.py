"""The Res2Net family: architectures, the model table and ``create_model``."""

from .common import FeatureInfo
from .factory import build_model, create_model
from .registry import REGISTRY, ModelSpec, PretrainedCfg, get_model_spec, list_models

__all__ = [
    "REGISTRY",
    "FeatureInfo",
    "ModelSpec",
    "PretrainedCfg",
    "build_model",
    "create_model",
    "get_model_spec",
    "list_models",
]
