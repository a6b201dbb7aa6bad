"""1x1 convolutions that train as matrix products on small CPU feature maps.

A 1x1 convolution is a matrix product over channels, but on CPU oneDNN's convolution
backward for it runs far below the speed of the same product as a GEMM when the map has
few positions. That is where Res2Net keeps most of its weights: the last two stages, at
14x14 and 7x7 for ImageNet crops and at 2x2 and 1x1 for small images such as the README's
digits. ``benchmarks/bench_pointwise.py`` times every 1x1 convolution of a network both
ways, forward and backward (2 Xeon cores, fp32): 1.1-6.9x faster as a GEMM in res2net50 at
32 px (8x8 down to 1x1; the training step 1.61x), 1.08-1.35x at 224 px's 14x14 and 7x7,
0.87-1.08x at 28x28 and 0.65-1.03x at 56x56. So while training on CPU, on inputs
of at most ``gemm_max_positions`` positions, this module computes the same product with
``F.linear`` (channels-last input) or ``torch.matmul`` (NCHW input). Everywhere else
(eval, no-grad, GPU, export, large maps) it is an ordinary ``nn.Conv2d``: same
parameters, same state dict, same traced and exported graph.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)`` with the
    GEMM training path described in the module docstring.

    ``gemm_max_positions`` (a class setting; ``0`` turns the path off) is 16x16: it takes
    the 14x14 stage of ImageNet crops and leaves 28x28, where the two are even and a
    strided GEMM's pixel copy already costs more than it saves.
    """

    gemm_max_positions: ClassVar[int] = 256

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)

    def _uses_gemm(self, x: torch.Tensor) -> bool:
        if not (self.training and torch.is_grad_enabled() and x.device.type == "cpu"):
            return False
        # The input's size, not the output's: a strided GEMM first copies every stride-th
        # pixel, which costs more than it saves on larger inputs.
        return x.shape[-2] * x.shape[-1] <= self.gemm_max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._uses_gemm(x):
            return super().forward(x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if self.stride != (1, 1):
            # A strided 1x1 convolution without padding reads every stride-th pixel.
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
        weight = self.weight.flatten(1)
        if channels_last:
            # NHWC view: a row per position, the product over channels, back to an NCHW view.
            return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)
        batch, _, height, width = x.shape
        out = torch.matmul(weight, x.reshape(batch, -1, height * width))
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(batch, -1, height, width)
