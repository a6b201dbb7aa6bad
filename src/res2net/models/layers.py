"""The two layer choices every network of the family takes as arguments, as timm and torchvision do.

``norm_layer`` is called with a channel count (``nn.BatchNorm2d``, torchvision's
``FrozenBatchNorm2d`` for detection, ``functools.partial(nn.BatchNorm2d, eps=...)``...);
``act_layer`` is an activation class. Passing the classes, not instances, is what lets a
detector build its trunk with frozen statistics from the start instead of rewriting the
module tree afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[..., nn.Module]


def make_act(act_layer: ActLayer) -> nn.Module:
    """``act_layer(inplace=True)`` where the activation has an in-place form (ReLU, SiLU...),
    else ``act_layer()`` (GELU has none)."""
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()
