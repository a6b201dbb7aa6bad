"""PyTorch execution of a BatchNorm-folded model in channels_last: bf16 through
``torch.compile`` (inductor's C++ backend), or eager oneDNN.

bf16 is compiled: with weights frozen into the graph (``freezing``), inductor prepacks
them for oneDNN's AMX/AVX-512-bf16 convolutions and fuses the element-wise tails
(bias, ReLU, the residual adds, the split/concat of Res2Net groups), which
``benchmarks/bench_inference.py`` measures well ahead of eager bf16, for a compilation of tens
of seconds. Eager is used when no C++ compiler is present and for the fp32 fallback without
onnxruntime. onnxruntime has no bf16 CPU convolutions.

Only the batch axis is marked dynamic, so one compiled graph serves every batch size
(batches of one get their own specialisation, as Dynamo always does for size 1) while
convolution shapes stay static, which is what oneDNN's kernels are tuned for.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelsLastModule(nn.Module):
    """Casts float32 NCHW input to ``dtype`` in channels_last, returns float32 logits.

    Outputs are computed under ``torch.inference_mode``: this module only ever serves
    predictions, and skipping autograd bookkeeping is free speed and memory (and what
    inductor's freezing requires).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype, *, compile_model: bool) -> None:
        super().__init__()
        self.dtype = dtype
        self.compiled = compile_model
        prepared = model.eval().requires_grad_(False).to(dtype=dtype, memory_format=torch.channels_last)
        self.model: nn.Module = (
            torch.compile(prepared, options={"freezing": True}) if compile_model else prepared  # type: ignore[assignment]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(dtype=self.dtype, memory_format=torch.channels_last)
            if self.compiled:
                torch._dynamo.maybe_mark_dynamic(x, 0)
            return self.model(x).to(torch.float32)

    def extra_repr(self) -> str:
        backend = "torch.compile (inductor, frozen)" if self.compiled else "eager oneDNN"
        return f"dtype={self.dtype}, backend={backend}"
