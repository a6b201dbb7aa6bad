"""BatchNorm for the narrow channel groups of a Res2Net block, trained on CPU.

A Res2Net block normalises each of its ``scale`` groups separately, so res2net50 trains
BatchNorm on 26- and 52-channel maps at 56x56 and 28x28. On channels-last input PyTorch's
CPU BatchNorm vectorises across channels, and a channel count that fills no whole vector
runs far below the speed of the same work on NCHW memory. ``python
benchmarks/bench_batchnorm.py --rounds 7`` (2 Xeon cores with AMX, batch 16) times BatchNorm
+ ReLU forward + backward at 26x56x56: 9.09 ms for the channels-last kernel in bf16 against
3.25 ms for this module, which converts to NCHW, normalises there and converts back (2.8x,
conversions included), and 10.19 against 5.18 ms in fp32 (2.0x); with ``--step``,
res2net50's whole training step at 224 px is 1.06x faster with the detour in bf16 and 1.03x
in fp32. So while training on CPU, this module takes that detour for narrow channels-last
maps; everywhere else (eval, GPU, NCHW input, small maps, torch.compile, which fuses
BatchNorm into its own kernels) it is an ordinary ``nn.BatchNorm2d``: same parameters, same
state dict, same statistics and gradients. The fused kernels of :mod:`.fused_norm` are faster
still at these shapes and run first; the detour is what a machine that cannot build them gets.

A Res2Net block applies ReLU to each group's output and hands the group to a channel
concatenation, whose backward returns the group's gradient as a strided slice of the wide
map; ReLU's backward on that slice was the slowest elementwise operation of the step
(1.9 ms per 26x56x56 group, batch 16, bf16). Called with ``relu=True``, the detour applies
the ReLU on its NCHW copy, and its backward masks the gradient after the one conversion it
makes anyway, on contiguous memory. ``bench_batchnorm.py --step --rounds 7``: res2net50's
bf16 step at 224 px takes 0.712 s so, 0.732 s with the block's ReLU after the detour (1.03x)
and 0.758 s without the detour (1.06x); in fp32 the ReLU's place makes no difference (1.704
against 1.700 s; 1.739 s without the detour).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .fused_norm import TrainingBatchNorm2d


class _BatchNormViaNCHW(torch.autograd.Function):
    """Training-mode BatchNorm (then ReLU, if ``relu``) of a channels-last map, computed by
    the NCHW kernels.

    The input is kept in NCHW memory for the backward pass (in place of the channels-last
    input ``F.batch_norm`` would keep), so the extra memory is one map while it runs, two
    with ``relu`` (its output is ReLU's mask).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        momentum: float,
        eps: float,
        relu: bool,
    ) -> torch.Tensor:
        planar = x.contiguous()
        out, save_mean, save_invstd = torch.native_batch_norm(
            planar, weight, bias, running_mean, running_var, True, momentum, eps
        )
        if relu:
            out.relu_()
        ctx.save_for_backward(planar, weight, running_mean, running_var, save_mean, save_invstd,
                              out if relu else None)
        ctx.eps = eps
        return out.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        planar, weight, running_mean, running_var, save_mean, save_invstd, activated = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        if activated is not None:
            grad_out = torch.ops.aten.threshold_backward(grad_out, activated, 0)
        grad_in, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_out, planar, weight, running_mean, running_var, save_mean, save_invstd, True,
            ctx.eps, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
        )  # fmt: skip
        if grad_in is not None:
            grad_in = grad_in.contiguous(memory_format=torch.channels_last)
        return grad_in, grad_weight, grad_bias, None, None, None, None, None


class NarrowBatchNorm2d(TrainingBatchNorm2d):
    """``TrainingBatchNorm2d(num_features)`` that, where the fused kernels do not run, takes the
    NCHW detour described in the module docstring.

    The detour is taken for channel counts that are not a multiple of ``vector_channels``
    and below ``max_channels``, on maps of at least ``min_positions`` positions: it pays at
    26x56x56, about breaks even at 52x28x28, and the conversions cost more than they save at
    every shape of 104 channels or more (the benchmark's ``bf16 NHWC via NCHW`` column).
    """

    vector_channels: ClassVar[int] = 16
    max_channels: ClassVar[int] = 64
    min_positions: ClassVar[int] = 28 * 28

    def takes_detour(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` would go through the NCHW kernels (never while fx traces, nor where
        the fused kernels run)."""
        features = self.num_features
        return (
            self.trains_channels_last_on_cpu(x)
            and torch.is_grad_enabled()
            and features % self.vector_channels != 0
            and features < self.max_channels
            and x.shape[-2] * x.shape[-1] >= self.min_positions
            and not x.is_contiguous()
            and not self.fuses(x)
        )

    def _unfused(self, x: torch.Tensor, relu: bool) -> torch.Tensor:
        if not self.takes_detour(x):
            return super()._unfused(x, relu)
        return _BatchNormViaNCHW.apply(
            x, self.weight, self.bias, self.running_mean, self.running_var, self.count_batch(), self.eps, relu
        )
