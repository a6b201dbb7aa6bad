"""mmdetection's Res2Net parameter names, read and written.

mmdetection's ``Res2Net`` backbone is always the v1b layout (deep stem, avg-pool shortcut) and
names its parameters like ours except for the stem: its ``stem`` Sequential holds all three
convolutions *and* their BatchNorms (``stem.0/1``, ``stem.3/4``, ``stem.6/7``), where our deep
stem ends at the third convolution (``conv1.0/1/3/4/6``) and its BatchNorm is ``bn1``. Blocks
(``layerN.i.conv1/bn1/convs.j/bns.j/conv3/bn3``, ``downsample.1/2``) and DCN offset branches
(``convs.j.conv_offset``) match.

A detector checkpoint (``{"meta": ..., "state_dict": {"backbone.*", "neck.*", "rpn_head.*",
...}}``) carries the backbone behind a ``backbone.`` prefix; a backbone file (what
``init_cfg=dict(type="Pretrained", checkpoint=...)`` reads) carries it without. The layout is
recognised by its stem, which no other source names ``stem.0``; that is a property of the
layout, not a guess from a file name. Its first-block pooling differs from the paper's code
(see ``pool_unstrided`` in :class:`~res2net.models.res2net.Res2Net`), which
:func:`res2net.factory.model_from_checkpoint` applies for these files.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from res2net.errors import CheckpointError

BACKBONE_PREFIX = "backbone."
#: mmdetection's stem entry -> ours.
_STEM_TO_OURS = {"stem.0": "conv1.0", "stem.1": "conv1.1", "stem.3": "conv1.3", "stem.4": "conv1.4",
                 "stem.6": "conv1.6", "stem.7": "bn1"}
_STEM_TO_MMDET = {ours: theirs for theirs, ours in _STEM_TO_OURS.items()}
_MARKER = "stem.0.weight"
_HEAD = "fc."


def is_mmdet_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` is an mmdetection Res2Net backbone or detector state dict."""
    return _MARKER in state or BACKBONE_PREFIX + _MARKER in state


def _rename(name: str, table: Mapping[str, str]) -> str:
    module, _, leaf = name.rpartition(".")
    return f"{table.get(module, module)}.{leaf}"


def from_mmdet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names for the backbone of an mmdetection state dict; a detector's neck and heads
    (everything outside ``backbone.``) are left out."""
    if BACKBONE_PREFIX + _MARKER in state:
        state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    return {_rename(name, _STEM_TO_OURS): tensor for name, tensor in state.items()}


def to_mmdet(state: Mapping[str, torch.Tensor], *, prefix: str = "") -> dict[str, torch.Tensor]:
    """mmdetection's names for our v1b backbone's state dict (the classifier is dropped);
    ``prefix="backbone."`` gives a detector's naming."""
    if "conv1.0.weight" not in state or "conv1.6.weight" not in state:
        raise CheckpointError(
            "mmdetection's Res2Net is the v1b layout (deep stem): only res2net*_v1b models can be written "
            "in its naming"
        )
    return {prefix + _rename(name, _STEM_TO_MMDET): tensor for name, tensor in state.items()
            if not name.startswith(_HEAD)}
