"""A Res2Net family member prepared as a detection or segmentation trunk.

Detection fine-tuning keeps most of an ImageNet (or digits) classifier as it was: the early
stages stay frozen and BatchNorm statistics stay fixed, because detection batches (a few
large images per device) are far too small to estimate them (torchvision's
``FrozenBatchNorm2d``; mmdetection's ``frozen_stages`` and ``norm_eval``). Everything here
works on any family member through ``feature_stages()`` / ``feature_info``, so the ResNet-style
and the DLA-style networks are trunks alike, with weights from any source
:func:`res2net.create_model` reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d

from ..errors import UserError
from ..factory import create_model
from ..models import REGISTRY
from ..models.common import ClassifierBackbone

Norm = Literal["frozen", "bn", "sync"]
NORMS: tuple[str, ...] = ("frozen", "bn", "sync")
#: Number of feature_stages() groups: the stem, then four stages.
NUM_STAGES = 5


def res2net_backbone(
    name: str = "res2net50_v1b",
    *,
    weights: str | Path | None = None,
    trainable_stages: int = 3,
    norm: Norm = "frozen",
    dcn_stages: Sequence[bool] | None = None,
    output_stride: int = 32,
) -> ClassifierBackbone:
    """The classifier ``name`` without its head, loaded, frozen and normalised for detection.

    Args:
        weights: a weight tag of ``name`` (``"official"``, ``"mindcv"``, see
            :func:`res2net.list_pretrained`) or a local file in any supported format
            (ours, official, timm, MindCV, mmdetection); ``None``: random initialisation.
        trainable_stages: how many of the five stage groups, counted from the last, are
            trained (0: none, 5: all including the stem); the rest get no gradients.
        norm: ``frozen`` builds the trunk with ``norm_layer=FrozenBatchNorm2d`` (fixed statistics
            and affine, the detection default, as torchvision's detection ResNets are built);
            ``bn`` trains BatchNorm where the stage is trained
            (statistics of frozen stages stay fixed); ``sync`` is ``bn`` with statistics
            reduced over processes (``SyncBatchNorm``, CUDA under torch.distributed).
        dcn_stages: per stage, deformable 3x3 convolutions (ResNet-style networks only).
        output_stride: 32, or 16 / 8 with dilated late stages (segmentation).
    """
    if not 0 <= trainable_stages <= NUM_STAGES:
        raise UserError(f"trainable_stages must be between 0 and {NUM_STAGES}, got {trainable_stages}")
    if norm not in NORMS:
        raise UserError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    extra: dict[str, Any] = {}
    if dcn_stages is not None and any(dcn_stages):
        if REGISTRY.architecture_of(name).family != "res2net":
            raise UserError(f"dcn_stages needs a ResNet-style backbone; {name} is a DLA network")
        extra["dcn_stages"] = tuple(bool(s) for s in dcn_stages)
    if norm == "frozen":
        extra["norm_layer"] = FrozenBatchNorm2d
    source = _weights_argument(name, weights)
    model = create_model(name, num_classes=0, output_stride=output_stride, **source, **extra)
    if not isinstance(model, ClassifierBackbone):  # create_model returns the full network here
        raise TypeError(f"{name} did not build a backbone")
    for module_name in frozen_stage_names(model, trainable_stages):
        getattr(model, module_name).requires_grad_(False)
    if norm == "sync":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _weights_argument(name: str, weights: str | Path | None) -> dict[str, object]:
    """``create_model`` arguments for ``weights``: a tag of the architecture, or a file."""
    if weights is None or weights == "":
        return {}
    tags = REGISTRY.tags(name)
    if isinstance(weights, str) and weights in tags:
        return {"pretrained": weights}
    path = Path(weights)
    if not path.exists():
        known = ", ".join(tags) or "none"
        raise UserError(f"backbone weights {str(weights)!r} are neither a file nor a weight tag of {name} "
                        f"(tags: {known})")
    return {"checkpoint_path": path}


def frozen_stage_names(model: ClassifierBackbone, trainable_stages: int) -> list[str]:
    """Names of the submodules in the first ``5 - trainable_stages`` stage groups, in forward order."""
    return model.first_stage_modules(len(model.feature_stages()) - trainable_stages)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` replaced by a ``FrozenBatchNorm2d`` holding its
    statistics and affine parameters (in place for children; returns the root).

    Deprecated: build the network with ``norm_layer=FrozenBatchNorm2d`` instead (what
    :func:`res2net_backbone` does for ``norm="frozen"``)."""
    warnings.warn("freeze_batch_norm is deprecated: build with norm_layer=torchvision.ops.FrozenBatchNorm2d",
                  DeprecationWarning, stacklevel=2)
    return _frozen(module)


def _frozen(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        frozen.weight.copy_(module.weight.detach())
        frozen.bias.copy_(module.bias.detach())
        frozen.running_mean.copy_(module.running_mean)
        frozen.running_var.copy_(module.running_var)
        return frozen
    for child_name, child in module.named_children():
        replaced = _frozen(child)
        if replaced is not child:
            setattr(module, child_name, replaced)
    return module


class StageTrunk(IntermediateLayerGetter):
    """torchvision's ``IntermediateLayerGetter`` over a backbone's stages that keeps the
    BatchNorm layers of frozen stages in eval mode whatever ``.train()`` is called with, so
    their running statistics never move (mmdetection's ``norm_eval`` for the frozen part)."""

    def __init__(self, backbone: ClassifierBackbone, return_layers: dict[str, str], trainable_stages: int) -> None:
        super().__init__(backbone, return_layers)
        self.frozen_names = tuple(n for n in frozen_stage_names(backbone, trainable_stages) if n in self)
        self.train()

    def train(self, mode: bool = True) -> StageTrunk:
        super().train(mode)
        for name in self.frozen_names:
            for layer in self[name].modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                    layer.eval()
        return self
