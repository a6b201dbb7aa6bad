"""Put a checkpoint's weights into one of our models, or explain exactly why not.

Loading is strict except for what a user means on purpose: a classifier of another size
(fine-tuning on a new label set) is re-initialised with one warning; MindCV's 1001-class
ImageNet heads go into a 1000-class model by keeping their first 1000 rows, exactly as
MindCV's own ``load_pretrained`` does (its ImageNet labels are the 1000 folder indices,
the 1001st output is never trained); BatchNorm ``num_batches_tracked`` counters, which
MindSpore and old PyTorch files lack and which do not affect eval outputs, keep the
model's value (and a file's counters are dropped for norms that keep none, such as
``FrozenBatchNorm2d``); and the offset branches of deformable convolutions (``conv_offset``), which a
plain checkpoint has no use for, keep their zero initialisation, so a detection backbone with
DCN stages starts from a classifier's weights computing what the classifier did. Everything
else that does not fit is one CheckpointError listing the missing, unexpected and wrongly
shaped keys, because a silently half-loaded network
produces plausible-looking garbage.
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from res2net.checkpoint.formats import read_checkpoint
from res2net.checkpoint.remap import HEAD_WEIGHT, to_our_names
from res2net.checkpoint.sniff import CheckpointFormat
from res2net.errors import CheckpointError
from res2net.models.labels import IMAGENET_CLASSES, MINDCV_IMAGENET_ROWS

_HEAD_PREFIX = "fc."
_HEAD_BIAS = "fc.bias"

log = logging.getLogger(__name__)
_COUNTER = "num_batches_tracked"
_OFFSET_BRANCH = ".conv_offset."
_LISTED = 8


def _listing(label: str, items: Iterable[str]) -> str | None:
    """``"N label: a, b, ... and M more"``, or None when there is nothing to list."""
    ordered = sorted(items)
    if not ordered:
        return None
    more = f" ... and {len(ordered) - _LISTED} more" if len(ordered) > _LISTED else ""
    return f"{len(ordered)} {label}: {', '.join(ordered[:_LISTED])}{more}"


def _classes(tensor: torch.Tensor) -> int:
    return int(tensor.shape[0])


class HeadReinitialisedWarning(UserWarning):
    """The checkpoint's classifier did not fit the model's classes and a fresh one was made (fine-tuning)."""


class HeadFit(enum.Enum):
    """What loading did with the checkpoint's classifier."""

    LOADED = "loaded"  # same rows as the model's: taken as it is
    NO_HEAD = "no head"  # the file or the model has none
    MINDCV_ROWS_DROPPED = "MindCV's unused 1001st row dropped"
    REINITIALISED = "re-initialised"  # another size: fine-tuning starts from a fresh classifier


def _fit_head(
    state: dict[str, torch.Tensor],
    model: nn.Module,
    target: Mapping[str, torch.Tensor],
    *,
    origin: str,
    model_name: str,
    strict_head: bool,
) -> tuple[dict[str, torch.Tensor], HeadFit]:
    """Replace the checkpoint's classifier by a freshly initialised one when the model's has
    another number of classes."""
    theirs, ours = state.get(HEAD_WEIGHT), target.get(HEAD_WEIGHT)
    if theirs is None and ours is None:
        return state, HeadFit.NO_HEAD
    if theirs is None:
        # A backbone file (e.g. mmdetection's) into a classifier: the trunk loads, the head is new.
        if strict_head:
            raise CheckpointError(f"{origin}: has no classifier but model {model_name} has {_classes(ours)} classes")
        warnings.warn(f"{origin}: has no classifier; model {model_name}'s {_classes(ours)}-class classifier is "
                      "freshly initialised and must be trained (fine-tuning)", HeadReinitialisedWarning, stacklevel=4)
        fresh_head = {k: v for k, v in model.state_dict().items() if k.startswith(_HEAD_PREFIX)}
        return dict(state) | fresh_head, HeadFit.REINITIALISED
    if ours is None:
        # The model was built without a classifier (num_classes=0): the head is not wanted.
        return {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIX)}, HeadFit.NO_HEAD
    if theirs.dim() != 2 or theirs.shape[1] != ours.shape[1] or theirs.shape[0] == ours.shape[0]:
        return state, HeadFit.LOADED  # same size, or a genuine mismatch reported with the rest
    if (_classes(theirs), _classes(ours)) == (MINDCV_IMAGENET_ROWS, IMAGENET_CLASSES) and _HEAD_BIAS in state:
        log.info("%s: 1001-class MindCV classifier, keeping its first 1000 classes as MindCV does", origin)
        kept = {HEAD_WEIGHT: theirs[:IMAGENET_CLASSES], _HEAD_BIAS: state[_HEAD_BIAS][:IMAGENET_CLASSES]}
        return state | kept, HeadFit.MINDCV_ROWS_DROPPED
    if strict_head:
        raise CheckpointError(
            f"{origin}: classifier has {_classes(theirs)} classes but model {model_name} has {_classes(ours)}"
        )
    warnings.warn(
        f"{origin}: classifier has {_classes(theirs)} classes, model {model_name} has {_classes(ours)}; "
        "the classifier is re-initialised and must be trained (fine-tuning)",
        HeadReinitialisedWarning,
        stacklevel=4,
    )
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):
        reset(_classes(ours))
    trunk = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIX)}
    fresh_head = {k: v for k, v in model.state_dict().items() if k.startswith(_HEAD_PREFIX)}
    return trunk | fresh_head, HeadFit.REINITIALISED


def load_state_into(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    *,
    origin: str,
    model_name: str,
    strict_head: bool = False,
    fmt: CheckpointFormat | None = None,
) -> HeadFit:
    """Load a state dict in its source's naming (``fmt`` decides: MindCV for MindSpore files,
    the official / timm names otherwise) into ``model``; returns what happened to the head.

    ``origin`` names the checkpoint in messages (normally its path).
    """
    target = model.state_dict()
    state, fit = _fit_head(
        to_our_names(source, target, fmt), model, target, origin=origin, model_name=model_name,
        strict_head=strict_head,
    )
    target = model.state_dict()  # the head may have been re-created
    for key, value in target.items():
        if (key.endswith(_COUNTER) or _OFFSET_BRANCH in key) and key not in state:
            state[key] = value
    for key in [k for k in state if k.endswith(_COUNTER) and k not in target]:
        del state[key]  # a norm without a counter (FrozenBatchNorm2d) has no use for the file's
    missing = target.keys() - state.keys()
    unexpected = state.keys() - target.keys()
    shapes = [
        f"{k} {list(state[k].shape)} vs {list(target[k].shape)}"
        for k in sorted(state.keys() & target.keys())
        if state[k].shape != target[k].shape
    ]
    problems = [
        p
        for p in (
            _listing("missing keys", missing),
            _listing("unexpected keys", unexpected),
            _listing("shape mismatches (checkpoint vs model)", shapes),
        )
        if p
    ]
    if problems:
        raise CheckpointError(f"{origin}: does not fit model {model_name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return fit


def load_checkpoint_into(
    model: nn.Module, path: str | Path, *, model_name: str, use_ema: bool = False, strict_head: bool = False
) -> HeadFit:
    """Read the checkpoint at ``path`` (format detected from its bytes, read once) into ``model``.

    ``use_ema`` loads the exponential-moving-average weights instead of the live ones;
    ``strict_head`` turns a classifier-size mismatch into an error instead of a
    re-initialisation.
    """
    raw = read_checkpoint(path, use_ema=use_ema)
    return load_state_into(
        model, raw.state, origin=str(path), model_name=model_name, strict_head=strict_head, fmt=raw.format
    )
