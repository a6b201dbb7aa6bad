"""Faster training on CPUs, applied to a built model from outside it.

The networks in :mod:`res2net.models` are plain PyTorch modules. This package makes a
*training copy* of one, in the manner of ``nn.SyncBatchNorm.convert_sync_batchnorm``: the copy
shares every parameter and buffer with the model (an optimizer step or a statistics update
through either is seen by both; the state dict is the same), while some of its modules are
swapped for ones that train faster on a CPU:

* ``nn.BatchNorm2d`` -> :class:`~.fused_norm.FusedBatchNorm2d` (fused C++ kernels; in a Res2Net
  block the ReLU and the residual add run inside them, see :class:`FusedBottle2neck`);
* 1x1 ``nn.Conv2d`` -> :class:`~.gemm_conv.GemmConv1x1` (a GEMM on small maps).

The model itself keeps its plain modules, so evaluation, EMA, export, BatchNorm folding and
serving never see the swapped ones. The trainer applies this from the recipe's
``cpu_kernels`` key; ``host_memory`` (:mod:`.host_memory`) is the other CPU switch.
``benchmarks/bench_cpu_training.py`` measures each piece on the training step.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import torch
from torch import nn

from ..models.blocks import Bottle2neck
from .fused_norm import FusedBatchNorm2d, can_fuse
from .gemm_conv import GemmConv1x1, can_use_gemm
from .kernels import KernelBuildError, compiler_available, load_kernels

__all__ = [
    "FusedBatchNorm2d",
    "FusedBottle2neck",
    "GemmConv1x1",
    "KernelBuildError",
    "accelerate_cpu_training",
    "compiler_available",
    "load_kernels",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class FusedBottle2neck(Bottle2neck):
    """A Res2Net block of a training copy: its norms apply the block's ReLU inside their kernels
    (the block's own ``relu`` is an identity), and ``bn3`` also adds the shortcut before it, so
    the block's last BatchNorm, residual add and ReLU are one pass over memory."""

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.multi_scale(self.bn1(self.conv1(x))))
        return self.bn3(out, residual=shortcut)


def accelerate_cpu_training(model: ModuleT, *, kernels: ModuleType | None, gemm_1x1: bool = True) -> ModuleT:
    """A training copy of ``model`` sharing its parameters and buffers, with CPU-training modules.

    Args:
        model: any module; only plain ``nn.BatchNorm2d``, 1x1 ``nn.Conv2d`` and ``Bottle2neck``
            (without stochastic depth) are swapped, so detection's ``FrozenBatchNorm2d`` or a
            ``SyncBatchNorm`` stay as they are.
        kernels: the fused BatchNorm kernels (:func:`load_kernels`); None keeps PyTorch's BatchNorm.
        gemm_1x1: swap in :class:`GemmConv1x1`.

    ``model`` itself is not changed.
    """

    def swap(module: nn.Module) -> nn.Module | None:
        if kernels is not None and can_fuse(module):
            fused = _retyped(module, FusedBatchNorm2d)
            fused.kernels = kernels
            return fused
        if kernels is not None and _fusable_block(module):
            return _retyped(module, FusedBottle2neck)
        if gemm_1x1 and can_use_gemm(module):
            return _retyped(module, GemmConv1x1)
        return None

    copy = _copy_tree(model, swap)
    for block in copy.modules():
        if isinstance(block, FusedBottle2neck):
            _move_relu_into_norms(block)
    return copy


def _fusable_block(module: nn.Module) -> bool:
    """A Res2Net block whose norms are all plain BatchNorm and whose residual is not dropped
    (stochastic depth scales the branch between ``bn3`` and the add, so they cannot fuse)."""
    return (isinstance(module, Bottle2neck) and isinstance(module.drop_path, nn.Identity)
            and all(can_fuse(norm) for norm in (module.bn1, *module.bns, module.bn3)))


def _copy_tree(module: ModuleT, swap: Callable[[nn.Module], nn.Module | None]) -> ModuleT:
    """``module`` and its submodules as new module objects (``swap``'s replacements where it has
    one) over the same parameter and buffer tensors."""
    clone = swap(module) or _retyped(module, type(module))
    clone._modules = {name: None if child is None else _copy_tree(child, swap)
                      for name, child in module._modules.items()}
    return clone  # type: ignore[return-value]


def _retyped(module: nn.Module, cls: type[ModuleT]) -> ModuleT:
    """A new ``cls`` object with ``module``'s attributes: the same parameter and buffer
    dictionaries (so the same tensors), its own ``training`` flag; the caller gives it its own
    submodule table."""
    clone = cls.__new__(cls)
    clone.__dict__.update(module.__dict__)
    return clone


def _move_relu_into_norms(block: FusedBottle2neck) -> None:
    """``bn1``, ``bns`` and ``bn3`` apply the ReLU that follows each in the block; the block's
    own ``relu`` becomes an identity, so the inherited ``multi_scale`` does not apply it twice."""
    for norm in (block.bn1, *block.bns, block.bn3):
        assert isinstance(norm, FusedBatchNorm2d)
        norm.relu = True
    block.relu = nn.Identity()
