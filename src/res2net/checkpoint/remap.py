"""Translate other implementations' parameter names into ours (timm's).

Sources and how they differ from our names:

* timm and the official ResNet-layout Res2Net code: identical names.
Which translation applies is decided by the file's format, never guessed from the names:

* MindCV (MindSpore): BatchNorm ``gamma/beta/moving_mean/moving_variance`` are
  ``weight/bias/running_mean/running_var``, the shortcut is ``down_sample``, the head is
  ``classifier``; stems and blocks are otherwise named like ours (``conv1.0/1/3/4/6``,
  ``convs.i``, ``bns.i``), and tensor layouts (OIHW convolutions, out x in dense) match.
  MindCV's v1b builds the stride-1 shortcut of ``layer1`` as conv + BN (``down_sample.0/1``)
  where the official code, timm and we keep the avg-pool slot (``downsample.1/2``, the
  pool being an identity); the computation is the same, only the indices shift.
  A MindSpore *training* checkpoint also holds the optimizer's state.
* mmdetection: its stem names (``stem.0``..``stem.7``) and the ``backbone.`` prefix of its
  detector checkpoints, see :mod:`.mmdet`; recognised by that stem.
* Official Res2Net-DLA and timm DLA: a 1x1 ``Conv2d`` head (4-D ``fc.weight``, ours is a
  ``Linear``); the official files also carry ``project`` layers on multi-level trees that
  their forward pass never uses (the official DLA code builds them and never calls them),
  which our network does not have.

Only renaming and reshaping happen here; deciding whether the result fits the model is
``load.py``'s job, so that all mismatches are reported together.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from res2net.checkpoint.mmdet import from_mmdet, is_mmdet_layout
from res2net.checkpoint.sniff import CheckpointFormat

# Last name component renames (MindSpore BatchNorm -> PyTorch BatchNorm).
_MINDSPORE_LEAF = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
# Any name component renames (MindCV module names -> ours).
_MINDCV_MODULE = {"down_sample": "downsample", "classifier": "fc"}
_PROJECT = "project"
_SHORTCUT = ".downsample."
HEAD_WEIGHT = "fc.weight"


def translate_name(name: str) -> str:
    """Our name for a parameter named ``name`` by MindCV, timm or the official code."""
    parts = [_MINDCV_MODULE.get(p, p) for p in name.split(".")]
    parts[-1] = _MINDSPORE_LEAF.get(parts[-1], parts[-1])
    return ".".join(parts)


def is_training_state(name: str, names: set[str]) -> bool:
    """Whether ``name`` is optimizer or loop state rather than a network parameter.

    MindSpore optimizers keep one slot per parameter, named by a prefix before the
    parameter's name (``moments.``, ``adam_m.``, ``adam_v.``, ``accum.``...), and training
    loops save scalars at the top level (``global_step``, ``learning_rate``, ``momentum``,
    ``beta1_power``, ``scale_sense``, ``epoch_num``...). Every parameter of our networks
    lives inside a module, so a name without a dot, or one that is another entry's name
    behind one extra leading component, is never a weight of ours.
    """
    _, sep, rest = name.partition(".")
    return not sep or rest in names


def _shift_shortcut_indices(state: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> None:
    """Move conv + BN shortcuts saved at ``downsample.0/1`` to ``downsample.1/2`` where the
    model has an (identity) pool in slot 0."""
    convs = [k for k in state if k.endswith(f"{_SHORTCUT}0.weight") and state[k].dim() == 4]
    for conv in convs:
        prefix = conv[: -len("0.weight")]
        if conv in target or f"{prefix}1.weight" not in target or target[f"{prefix}1.weight"].dim() != 4:
            continue
        moved = {k: v for k, v in state.items() if k.startswith(prefix)}
        for key in moved:
            del state[key]
        for key, value in moved.items():
            index, _, leaf = key[len(prefix) :].partition(".")
            state[f"{prefix}{int(index) + 1}.{leaf}"] = value


def to_our_names(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], fmt: CheckpointFormat | None
) -> dict[str, torch.Tensor]:
    """``state`` renamed and reshaped for a model whose state dict is ``target``.

    The format decides the naming: MindSpore files get MindCV's renames and lose their
    optimizer and loop state; PyTorch and safetensors files already use the official / timm
    names. ``None`` (a state dict handed over in memory) is taken as the PyTorch naming. Then
    ``project`` entries the model lacks are dropped, shortcut indices follow the model's layout
    and a 1x1 convolution head is squeezed when the model's head is linear.
    """
    mindspore = fmt is CheckpointFormat.MINDSPORE
    if not mindspore and is_mmdet_layout(state):
        state = from_mmdet(state)
    names = set(state)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if mindspore and is_training_state(name, names):
            continue
        ours = translate_name(name) if mindspore else name
        if ours not in target and _PROJECT in ours.split("."):
            continue
        out[ours] = tensor
    _shift_shortcut_indices(out, target)
    head = out.get(HEAD_WEIGHT)
    wanted = target.get(HEAD_WEIGHT)
    if head is not None and wanted is not None and head.dim() == 4 and wanted.dim() == 2 and head.shape[2:] == (1, 1):
        out[HEAD_WEIGHT] = head.flatten(1)
    return out


def head_rows(state: Mapping[str, torch.Tensor], fmt: CheckpointFormat | None) -> int | None:
    """Rows of the checkpoint's classifier (its number of classes), whatever its naming; None
    for a file without one (a backbone)."""
    mindspore = fmt is CheckpointFormat.MINDSPORE
    for name, tensor in state.items():
        if (translate_name(name) if mindspore else name) == HEAD_WEIGHT:
            return int(tensor.shape[0])
    return None
