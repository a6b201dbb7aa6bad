"""The Res2Net bottleneck, shared by the ResNet-style and the DLA-style networks.

A Res2Net block replaces the single 3x3 convolution of a bottleneck by ``scale``
groups of channels, each convolved after adding the previous group's output. This
builds hierarchical residual-like connections inside one block, so one layer sees
several receptive-field sizes. The first block of a stage ("stage" type in the
paper's code) does not chain the groups; its last group is average-pooled instead.

Both backbones use this one class; they differ only in how they size the block
(``width``/``out_channels``) and how they pass the shortcut.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from .deform import DeformableConv2d
from .layers import ActLayer, NormLayer, make_act


def conv3x3(width: int, stride: int, dilation: int, groups: int, deformable: bool) -> nn.Module:
    """One group's 3x3 convolution (deformable in mmdetection's DCN stages)."""
    if deformable:
        return DeformableConv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups)
    return nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups, bias=False)


class Bottle2neck(nn.Module):
    """Res2Net / Res2NeXt bottleneck.

    Args:
        in_channels: channels entering the block.
        width: channels of each of the ``scale`` groups.
        out_channels: channels leaving the block.
        scale: number of groups the 1x1-reduced features are split into.
        stride: stride of the 3x3 convolutions (and of the pool on the last group).
        stage_first: first block of a stage; the groups are not chained. It stays
            true when a stride has been replaced by dilation, so weights keep their
            meaning for dilated (detection/segmentation) backbones.
        cardinality: groups of each 3x3 convolution (Res2NeXt when > 1).
        dilation: dilation of the 3x3 convolutions.
        downsample: projection applied to the input for the residual path.
        drop_path_rate: stochastic-depth probability for the residual branch.
        deformable: the 3x3 convolutions are deformable (DCNv1, zero offsets at first).
        pool_unstrided: the first block of a stride-1 stage still average-pools its last
            group (a 3x3 blur), as the paper's code, timm and MindCV do; mmdetection's
            Res2Net passes it through unpooled (False).
        norm_layer: normalisation after each convolution (``nn.BatchNorm2d``; detection
            passes torchvision's ``FrozenBatchNorm2d``).
        act_layer: activation class (``nn.ReLU``).
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        *,
        scale: int = 4,
        stride: int = 1,
        stage_first: bool = False,
        cardinality: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        drop_path_rate: float = 0.0,
        deformable: bool = False,
        pool_unstrided: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.width = width
        self.stage_first = stage_first
        num_convs = max(1, scale - 1)

        self.conv1 = nn.Conv2d(in_channels, width * scale, 1, bias=False)
        self.bn1 = norm_layer(width * scale)
        self.convs = nn.ModuleList(conv3x3(width, stride, dilation, cardinality, deformable) for _ in range(num_convs))
        self.bns = nn.ModuleList(norm_layer(width) for _ in range(num_convs))
        pooled = stage_first and scale > 1 and (stride > 1 or pool_unstrided)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if pooled else None
        self.conv3 = nn.Conv2d(width * scale, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.relu = make_act(act_layer)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """``shortcut`` lets a DLA tree pass its own projected residual."""
        if shortcut is None:
            shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.drop_path(self.bn3(self.conv3(self.multi_scale(out)))) + shortcut)

    def multi_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's Figure 2: split into ``scale`` groups; group i > 0 is convolved after adding
        the previous group's output (a stage's first block convolves each group alone); the last
        group passes through (average-pooled in a stage's first block)."""
        groups = torch.split(x, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            current = groups[i] if i == 0 or self.stage_first else outputs[-1] + groups[i]
            outputs.append(self.relu(bn(conv(current))))
        if self.scale > 1:
            outputs.append(groups[-1] if self.pool is None else self.pool(groups[-1]))
        return torch.cat(outputs, dim=1)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so a deep net begins as a shallow one."""
        nn.init.zeros_(self.bn3.weight)
