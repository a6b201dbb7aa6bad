"""Training-mode BatchNorm, with the ReLU and the residual add after it, in fused CPU kernels.

On CPU, BatchNorm is the largest cost of a Res2Net training step after the convolutions, and
it is bound by memory, not arithmetic: PyTorch's eager kernels read a map twice for the
statistics and once more to normalise, ReLU reads and writes it again, and the backward makes
five more passes after ReLU's own. The kernels of ``csrc/batch_norm_cpu.cpp`` do the same
arithmetic in fewer passes: one for the statistics (shifted one-pass sums accumulated in
double), one that normalises, adds the block's residual and applies the ReLU, and a backward
that masks by the ReLU while it reduces. ``benchmarks/bench_cpu_training.py`` measures what
that buys on a whole training step; ``tests/test_cpu_training.py`` holds outputs, gradients
and running statistics to ``nn.BatchNorm2d``'s.

:class:`FusedBatchNorm2d` only ever exists in a training copy made by
:func:`res2net.cpu_training.accelerate_cpu_training`, which swaps it in for ``nn.BatchNorm2d``
sharing the same parameters and buffers; the model everyone else sees keeps plain modules.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last NCHW map as the contiguous [N*H*W, C] matrix it is in memory (a view; a
    copy for other layouts, such as the channel slices a concatenation's backward hands on)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous()


def _as_map(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The [N*H*W, C] matrix back as the channels-last NCHW map of ``shape`` (a view)."""
    n, c, h, w = shape
    return rows.view(n, h, w, c).permute(0, 3, 1, 2)


class _FusedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of a channels-last map, plus ``residual`` (or None), then ReLU (if
    ``relu``); also returns the batch's mean and biased variance (not differentiable) for the
    module's running statistics.

    The output is allocated here as an ordinary channels-last tensor and the kernel writes into
    it, so it is not a view: an in-place operation after it (``nn.ReLU(inplace=True)`` in a
    stem) is allowed, as after any ATen operator. The output is saved for the backward only
    when the ReLU's mask needs it.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
        eps: float, relu: bool, kernels: ModuleType,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = _as_rows(x)
        out = torch.empty_like(x, memory_format=torch.channels_last)
        mean, var = kernels.forward(rows, weight, bias, None if residual is None else _as_rows(residual), eps, relu,
                                    _as_rows(out))
        ctx.save_for_backward(rows, out if relu else None, mean, var, weight)
        ctx.kernels, ctx.eps, ctx.relu = kernels, eps, relu
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: torch.Tensor, _grad_mean: Any, _grad_var: Any
    ) -> tuple[torch.Tensor | None, ...]:
        rows, out, mean, var, weight = ctx.saved_tensors
        wants_x, wants_residual = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        grad_x, grad_weight, grad_bias, grad_residual = ctx.kernels.backward(
            _as_rows(grad_out.to(rows.dtype)), rows, None if out is None else _as_rows(out), mean, var, weight,
            ctx.eps, ctx.relu, wants_x, wants_residual,
        )
        return (
            _as_map(grad_x, grad_out.shape) if wants_x else None,
            grad_weight,
            grad_bias,
            _as_map(grad_residual, grad_out.shape) if wants_residual else None,
            None,
            None,
            None,
        )


class FusedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose CPU training pass on channels-last float32/bfloat16 maps runs the
    fused kernels, followed by the ReLU when ``relu`` is set (the block's ReLU moved inside).
    Called with ``residual``, that map is added before the ReLU, in the same pass. Same
    parameters, buffers, statistics and gradients as ``nn.BatchNorm2d``; everywhere else (eval,
    other devices and layouts) it is PyTorch's kernel, then the addition and the ReLU.

    Made by :func:`res2net.cpu_training.accelerate_cpu_training`, which sets ``kernels``.
    """

    kernels: ModuleType
    relu: bool = False

    def fuses(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` runs the fused kernels."""
        return (
            self.training
            and x.device.type == "cpu"
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and x.dtype in (torch.float32, torch.bfloat16)
            and self.weight.dtype == torch.float32
            and x.numel() > x.shape[1]  # one value per channel: PyTorch's error, not ours
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """BatchNorm of ``x``, plus ``residual`` if given, then ReLU if ``self.relu``."""
        if not self.fuses(x) or (residual is not None and not _matches(residual, x)):
            out = super().forward(x)
            if residual is not None:
                out = out + residual
            return F.relu(out, inplace=True) if self.relu else out
        momentum = self._count_batch()
        out, mean, var = _FusedBatchNorm.apply(x, self.weight, self.bias, residual, self.eps, self.relu,
                                               self.kernels)
        count = x.numel() // x.shape[1]
        assert self.running_mean is not None and self.running_var is not None
        with torch.no_grad():
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var * (count / (count - 1)), momentum)  # unbiased, as PyTorch keeps it
        return out

    def _count_batch(self) -> float:
        """nn.BatchNorm2d's bookkeeping for a batch it normalises in training: count it, and return
        the running statistics' momentum (``momentum=None`` means a cumulative average)."""
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum


def _matches(residual: torch.Tensor, x: torch.Tensor) -> bool:
    return (residual.shape == x.shape and residual.dtype == x.dtype and residual.device == x.device
            and residual.is_contiguous(memory_format=torch.channels_last))


def can_fuse(module: nn.Module) -> bool:
    """Plain ``nn.BatchNorm2d`` (not a subclass such as SyncBatchNorm) with affine parameters and
    running statistics: what :class:`FusedBatchNorm2d` replaces."""
    return type(module) is nn.BatchNorm2d and module.affine and module.track_running_stats
