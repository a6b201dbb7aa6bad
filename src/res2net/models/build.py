"""``build_model``: the randomly initialised network behind a registered name.

Building knows nothing about weight files; :func:`res2net.create_model` (one floor up) builds
through here and then loads weights, so the model package never imports the checkpoint one.
"""

from __future__ import annotations

from typing import Any

from .common import ClassifierBackbone
from .dla import Res2NetDLA
from .registry import REGISTRY, Family
from .res2net import Res2Net

FAMILIES: dict[Family, type[ClassifierBackbone]] = {"res2net": Res2Net, "res2net_dla": Res2NetDLA}


def build_model(
    name: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    output_stride: int = 32,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **model_kwargs: Any,
) -> ClassifierBackbone:
    """The randomly initialised network ``name`` (any spelling, ``.tag`` allowed), no weights.

    ``model_kwargs`` are further constructor options of the family: ``norm_layer`` and
    ``act_layer`` for every network, ``dcn_stages`` and ``pool_unstrided`` for the ResNet-style
    ones (see :class:`~res2net.models.res2net.Res2Net`).
    """
    arch = REGISTRY.architecture_of(name)
    model = FAMILIES[arch.family](
        **arch.kwargs,
        **model_kwargs,
        num_classes=num_classes,
        in_chans=in_chans,
        output_stride=output_stride,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )
    default = REGISTRY.default_cfg(name)
    model.pretrained_cfg = default.replace(
        num_classes=num_classes, label_names=default.label_names if num_classes == default.num_classes else None
    )
    return model
