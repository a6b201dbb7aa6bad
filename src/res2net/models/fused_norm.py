"""Training-mode BatchNorm (and the ReLU after it) in fused CPU kernels, for channels-last maps.

On 2 CPU cores BatchNorm is the largest cost of a Res2Net training step after the
convolutions (``benchmarks/profile_train_step.py``: forward + backward 19% of an fp32 step,
ReLU's backward 5% more), and it is bound by memory, not arithmetic: PyTorch's eager kernels
read the map twice for the statistics, once more to normalise, and ReLU reads and writes it
again; the backward reads it five more times after ReLU's own pass. The kernels in
``csrc/batch_norm_cpu.cpp`` do the same arithmetic in fewer passes: one pass for the
statistics (shifted one-pass sums, accumulated in double), one that normalises and applies the
ReLU, and a backward that masks by the ReLU while it reduces. Statistics, outputs and
gradients equal ``nn.BatchNorm2d``'s to rounding (``tests/test_fused_norm.py``).

The kernels are C++, compiled on first use by ``torch.utils.cpp_extension`` (about 20 s on
2 cores, cached under ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) for
the machine they run on, like torch.compile's own CPU kernels; the ``train`` extra brings ninja,
and the compiler is the system's. Where they cannot be built (no C++ compiler or ninja) a warning
says so once and training runs PyTorch's kernels; setting
``RES2NET_FUSED_BATCHNORM=0`` chooses that without trying.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import fx, nn

SWITCH = "RES2NET_FUSED_BATCHNORM"
_SOURCE = Path(__file__).with_name("csrc") / "batch_norm_cpu.cpp"
_FLAGS = ["-O3", "-march=native", "-fopenmp"]
_log = logging.getLogger(__name__)


def _machine_signature() -> bytes:
    """What ``-march=native`` compiled for: a cached build must not run on another CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next((line for line in cpuinfo if line.startswith("flags")), "").encode()
    except OSError:
        return platform.processor().encode()


def _put_ninja_on_path() -> None:
    """cpp_extension runs ``ninja`` from PATH; the ``ninja`` wheel (the ``train`` extra) installs it
    next to the interpreter, which is not on PATH when a venv's python is run without activating it."""
    if shutil.which("ninja") is not None:
        return
    with contextlib.suppress(ImportError):
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])


@functools.cache
def fused_kernels() -> ModuleType | None:
    """The compiled kernels (built on the first call, then cached), or None where unavailable."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    key = hashlib.sha256(
        _SOURCE.read_bytes() + " ".join(_FLAGS).encode() + torch.__version__.encode() + _machine_signature()
    ).hexdigest()[:16]
    _put_ninja_on_path()
    try:
        # cpp_extension's import warns that a CUDA build of torch found no CUDA runtime; irrelevant here.
        extension_log = logging.getLogger("torch.utils.cpp_extension")
        level = extension_log.level
        extension_log.setLevel(logging.ERROR)
        try:
            from torch.utils import cpp_extension
        finally:
            extension_log.setLevel(level)
        module = cpp_extension.load(
            f"res2net_batch_norm_{key}", [str(_SOURCE)], extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"]
        )
    except Exception as error:  # any build failure means the same thing: use PyTorch's kernels
        _log.warning("fused CPU BatchNorm kernels unavailable (%s: %s); training uses PyTorch's kernels",
                     type(error).__name__, (str(error).strip().splitlines() or [""])[-1])
        return None
    return module


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """A channels-last NCHW map as the contiguous [N*H*W, C] matrix it is in memory (a view; a
    copy for other layouts, such as the channel slices a concatenation's backward hands on)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).contiguous()


class _FusedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of a channels-last map, plus ``residual`` (or None), then ReLU (if
    ``relu``); also returns the batch's mean and biased variance (not differentiable) for the
    module's running statistics."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
        eps: float, relu: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kernels = fused_kernels()
        assert kernels is not None
        rows = _as_rows(x)
        out, mean, var = kernels.forward(rows, weight, bias, None if residual is None else _as_rows(residual),
                                         eps, relu)
        ctx.save_for_backward(rows, out, mean, var, weight)
        ctx.kernels, ctx.eps, ctx.relu = kernels, eps, relu
        ctx.mark_non_differentiable(mean, var)
        return _as_map(out, x.shape), mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_out: torch.Tensor, _grad_mean: Any, _grad_var: Any
    ) -> tuple[torch.Tensor | None, ...]:
        rows, out, mean, var, weight = ctx.saved_tensors
        wants_x, wants_residual = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
        grad_x, grad_weight, grad_bias, grad_residual = ctx.kernels.backward(
            _as_rows(grad_out.to(rows.dtype)), rows, out, mean, var, weight, ctx.eps, ctx.relu, wants_x,
            wants_residual,
        )
        return (
            _as_map(grad_x, grad_out.shape) if wants_x else None,
            grad_weight,
            grad_bias,
            _as_map(grad_residual, grad_out.shape) if wants_residual else None,
            None,
            None,
        )


def _as_map(rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The [N*H*W, C] matrix back as the channels-last NCHW map of ``shape`` (a view)."""
    n, c, h, w = shape
    return rows.view(n, h, w, c).permute(0, 3, 1, 2)


def _matches(residual: torch.Tensor, x: torch.Tensor) -> bool:
    return (residual.shape == x.shape and residual.dtype == x.dtype and residual.device == x.device
            and residual.is_contiguous(memory_format=torch.channels_last))


class TrainingBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, state dict, statistics and gradients) whose CPU
    training pass on channels-last float32/bfloat16 maps runs the fused kernels; ``residual`` is
    added to its output and ``relu=True`` applies a ReLU after that, inside the same kernels.
    Everywhere else (eval, GPU, NCHW input, fx tracing, torch.compile, kernels unavailable) it is
    the ordinary module, then the addition and the ReLU."""

    def trains_channels_last_on_cpu(self, x: torch.Tensor) -> bool:
        """A training pass, with running statistics, of a real (not fx-traced, not compiled)
        channels-last CPU map: where an eager kernel choice is ours to make."""
        return (
            self.training
            and self.affine
            and self.track_running_stats
            and not isinstance(x, fx.Proxy)
            and x.device.type == "cpu"
            and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.compiler.is_compiling()
        )

    def fuses(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` runs the fused kernels."""
        return (
            self.trains_channels_last_on_cpu(x)
            and x.dtype in (torch.float32, torch.bfloat16)
            and self.weight.dtype == torch.float32
            and x.numel() > x.shape[1]  # one value per channel: PyTorch's error, not ours
            and fused_kernels() is not None
        )

    def count_batch(self) -> float:
        """nn.BatchNorm2d's bookkeeping for a batch it normalises in training: count it, and
        return the running statistics' momentum (``momentum=None`` means a cumulative average)."""
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def forward(self, x: torch.Tensor, relu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
        """BatchNorm of ``x``, plus ``residual`` if given; with ``relu``, ReLU of that."""
        if not self.fuses(x) or (residual is not None and not _matches(residual, x)):
            out = self._unfused(x, relu and residual is None)
            if residual is not None:
                out = out + residual
                return torch.relu_(out) if relu else out
            return out
        assert self.running_mean is not None and self.running_var is not None
        momentum = self.count_batch()
        out, mean, var = _FusedBatchNorm.apply(x, self.weight, self.bias, residual, self.eps, relu)
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var * (count / (count - 1)), momentum)  # unbiased, as PyTorch keeps it
        return out

    def _unfused(self, x: torch.Tensor, relu: bool) -> torch.Tensor:
        """PyTorch's kernels (subclasses may choose others)."""
        out = super().forward(x)
        return torch.relu_(out) if relu else out


def norm_relu(norm: nn.Module, relu: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``relu(norm(x))``, with the ReLU inside a ``TrainingBatchNorm2d``'s kernels. Under fx
    tracing, or when a transform has replaced the norm (SyncBatchNorm, FrozenBatchNorm2d), it is
    the module ``relu``, so the graph keeps the BatchNorm -> ReLU pattern that folding and
    quantisation look for."""
    if isinstance(norm, TrainingBatchNorm2d) and not isinstance(x, fx.Proxy):
        return norm(x, relu=True)
    return relu(norm(x))
