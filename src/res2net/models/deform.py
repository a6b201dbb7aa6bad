"""Deformable 3x3 convolution for the Res2Net block (DCNv1, as mmdetection's ``dcn`` option).

A deformable convolution samples its 3x3 taps at learned fractional offsets instead of the
fixed grid, which helps detection on objects of varying shape. The offsets come from an
ordinary convolution over the same input (``conv_offset``), initialised to zero so that a
freshly converted block computes exactly what the plain one did and training starts from the
pretrained behaviour. Parameter names are mmcv's ``DeformConv2dPack`` ones (``weight``,
``conv_offset.weight``, ``conv_offset.bias``), so mmdetection's DCN checkpoints load by name
and a plain checkpoint's ``convs.i.weight`` fills the deformable weight directly.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import DeformConv2d


class DeformableConv2d(DeformConv2d):
    """torchvision's ``DeformConv2d`` with its own zero-initialised offset branch.

    Only the 3x3 convolutions inside Res2Net blocks use it; ``deform_groups`` offset sets are
    predicted (one per channel group that shares offsets).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        deform_groups: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=False,
        )
        self.conv_offset = nn.Conv2d(
            in_channels, deform_groups * 2 * kernel_size * kernel_size, kernel_size, stride=stride,
            padding=padding, dilation=dilation, bias=True,
        )
        self.reset_offsets()

    def reset_offsets(self) -> None:
        """Zero offsets: the layer equals a plain convolution with the same weight."""
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, self.conv_offset(x))
