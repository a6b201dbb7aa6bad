"""Eager PyTorch (oneDNN) execution of a BatchNorm-folded model in channels_last.

bf16 runs here: with BatchNorm folded away, bf16 weights and activations in
channels_last go straight to oneDNN's AMX/AVX-512-bf16 convolutions, measured faster
than autocast (which re-casts every weight on every call); onnxruntime has no bf16
convolution kernels on CPU. fp32 runs here when onnxruntime is not installed.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelsLastModule(nn.Module):
    """Casts float32 NCHW input to ``dtype`` in channels_last, returns float32 logits.

    Outputs are computed under ``torch.inference_mode``: this module only ever serves
    predictions, and skipping autograd bookkeeping is free speed and memory.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.model = model.eval().requires_grad_(False).to(dtype=dtype, memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self.model(x.to(dtype=self.dtype, memory_format=torch.channels_last))
            return out.to(torch.float32)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, backend=torch-onednn"
