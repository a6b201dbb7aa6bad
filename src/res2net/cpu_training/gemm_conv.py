"""1x1 convolutions that train as matrix products on small CPU feature maps.

A 1x1 convolution is a matrix product over channels, but on CPU oneDNN's convolution backward
for it runs well below the speed of the same product as a GEMM when the map has few
positions. That is where Res2Net keeps most of its weights: the last two stages, at 14x14 and
7x7 for ImageNet crops and at 2x2 and 1x1 for small images such as the README's digits.
``benchmarks/bench_cpu_training.py`` measures the training step with and without this path. In bf16 the GEMM
pays only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX): elsewhere torch emulates bf16 matrix
products far below oneDNN's bf16 convolutions, and the path steps aside.

:class:`GemmConv1x1` only ever exists in a training copy made by
:func:`res2net.cpu_training.accelerate_cpu_training`, sharing the ``nn.Conv2d``'s weight.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..provenance import host

#: Largest input map (positions) trained as a GEMM: the 14x14 stage of ImageNet crops, not 28x28,
#: where the two are even and a strided GEMM's pixel copy already costs more than it saves.
GEMM_MAX_POSITIONS = 16 * 16


class GemmConv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel that, while training on CPU on inputs of at most
    ``GEMM_MAX_POSITIONS`` positions, computes the same product with ``F.linear`` (channels-last
    input) or ``torch.matmul`` (NCHW input); elsewhere it is the ordinary convolution."""

    def _uses_gemm(self, x: torch.Tensor) -> bool:
        # The input's size, not the output's: a strided GEMM first copies every stride-th pixel,
        # which costs more than it saves on larger inputs.
        return (self.training and torch.is_grad_enabled() and x.device.type == "cpu"
                and x.shape[-2] * x.shape[-1] <= GEMM_MAX_POSITIONS
                and not (_computes_in_bf16(x) and not native_bf16_matmul()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._uses_gemm(x):
            return super().forward(x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if self.stride != (1, 1):  # a strided 1x1 convolution without padding reads every stride-th pixel
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
        weight = self.weight.flatten(1)
        if channels_last:  # NHWC view: a row per position, the product over channels, back to an NCHW view
            return F.linear(x.permute(0, 2, 3, 1), weight, self.bias).permute(0, 3, 1, 2)
        batch, _, height, width = x.shape
        out = torch.matmul(weight, x.reshape(batch, -1, height * width))
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(batch, -1, height, width)


def _computes_in_bf16(x: torch.Tensor) -> bool:
    return x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)


@functools.cache
def native_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(host()["cpu_flags"]))


def can_use_gemm(module: nn.Module) -> bool:
    """A plain unpadded, undilated, ungrouped 1x1 ``nn.Conv2d``: what :class:`GemmConv1x1` replaces."""
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.padding == (0, 0)
            and module.dilation == (1, 1) and module.groups == 1 and module.padding_mode == "zeros")
