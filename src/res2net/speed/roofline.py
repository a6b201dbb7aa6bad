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

from ..metrics import autocast_context

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


def matmul_gflops(dtype: str | None, repeats: int = 10, budget_s: float = 2.0) -> float:
    """GFLOP/s of a square matrix product at ``dtype`` (float32 for None): this machine's practical
    peak for the convolutions and matrix products a training step is made of.

    The matrices grow from 512 to at most 2048 while the next size's product (8x the work) would
    take under a tenth of ``budget_s`` (a CPU without native bf16 runs bf16 products ~100x slower
    than fp32); each size is timed for ``repeats`` products or ``budget_s``, and the best product
    of the last size counts.
    """
    kind = getattr(torch, dtype) if dtype else torch.float32
    generator = torch.Generator().manual_seed(0)
    size, best = 256, float("inf")
    while size < _MATMUL_SIZE:
        size *= 2
        a = torch.randn(size, size, generator=generator).to(kind)
        b = torch.randn(size, size, generator=generator).to(kind)
        a @ b  # warm-up: oneDNN / BLAS kernel selection
        spent, best, done = 0.0, float("inf"), 0
        while done < repeats and (done == 0 or spent < budget_s):
            started = time.perf_counter()
            a @ b
            elapsed = time.perf_counter() - started
            best, spent, done = min(best, elapsed), spent + elapsed, done + 1
        if best * 8 > budget_s / 10:  # the next size (8x the work) would take too long
            break
    return 2 * size**3 / best / 1e9
