"""Helpers shared by the checkpoint tests: random-but-meaningful weights and tiny models.

BatchNorm running statistics are randomised because a fresh network's (mean 0, var 1)
make BatchNorm nearly an identity in eval mode, which would hide a wrong mapping of
``running_mean``/``running_var`` (or MindSpore's ``moving_*``).
"""

from __future__ import annotations

import torch
from torch import nn

from res2net.models.res2net import Res2Net


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, random biases; ``model`` in eval mode.

    Convolution and linear weights keep their (random) initialisation: redrawing them
    would only cost time.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.copy_(torch.rand(module.bias.shape, generator=gen) - 0.5)
    return model.eval()


def tiny_res2net(num_classes: int = 10, **kwargs: object) -> Res2Net:
    """A one-block-per-stage Res2Net: real layout, fast to build and run."""
    return Res2Net([1, 1, 1, 1], base_width=4, scale=2, num_classes=num_classes, **kwargs).eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest expected magnitude."""
    return float((actual - expected).abs().max() / expected.abs().max())
