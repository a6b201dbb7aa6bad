"""How close a training step comes to what the machine can do: the step's floating-point work
and the machine's matrix-multiply rate at the step's precision.

A ratio against timm says who is faster; it does not say whether more is possible. Dividing
the work of one step (counted by torch's FlopCounterMode: convolutions and matrix products,
forward and backward) by the rate of one large matrix product at the same precision gives the
ceiling no training loop can pass, and each contender's img/s times the work per image shows
how much of it that loop uses.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..evaluate import autocast_context

_MATMUL_SIZE = 2048


def training_gflop_per_image(model: nn.Module, image_size: int, dtype: str | None, batch: int = 2) -> float:
    """GFLOP of one forward + backward pass per image, counted on one trial step of ``batch`` images.

    The gradients it leaves are cleared; BatchNorm's running statistics move once.
    """
    images = torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
    targets = torch.zeros(batch, dtype=torch.long)
    model.train()
    with FlopCounterMode(display=False) as counter:
        with autocast_context(images.device, dtype):
            logits = model(images)
        F.cross_entropy(logits.float(), targets).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch / 1e9


def matmul_gflops(dtype: str | None, repeats: int = 10) -> float:
    """GFLOP/s of a 2048x2048 matrix product at ``dtype`` (float32 for None): this machine's
    practical peak for the convolutions and matrix products a training step is made of."""
    kind = getattr(torch, dtype) if dtype else torch.float32
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, generator=generator).to(kind)
    b = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, generator=generator).to(kind)
    a @ b  # warm-up: oneDNN / BLAS kernel selection
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * _MATMUL_SIZE**3 / best / 1e9
