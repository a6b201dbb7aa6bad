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
from torch import fx, nn
from torchvision.ops import StochasticDepth

from .deform import DeformableConv2d
from .fused_norm import TrainingBatchNorm2d, norm_relu
from .narrow_norm import NarrowBatchNorm2d
from .pointwise import PointwiseConv2d


def _conv3x3(width: int, stride: int, dilation: int, groups: int, deformable: bool) -> nn.Module:
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
    ) -> None:
        super().__init__()
        self.scale = scale
        self.width = width
        self.stage_first = stage_first
        num_convs = max(1, scale - 1)

        self.conv1 = PointwiseConv2d(in_channels, width * scale)
        self.bn1 = TrainingBatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            _conv3x3(width, stride, dilation, cardinality, deformable) for _ in range(num_convs)
        )
        self.bns = nn.ModuleList(NarrowBatchNorm2d(width) for _ in range(num_convs))
        pooled = stage_first and scale > 1 and (stride > 1 or pool_unstrided)
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if pooled else None
        self.conv3 = PointwiseConv2d(width * scale, out_channels)
        self.bn3 = TrainingBatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = StochasticDepth(drop_path_rate, "row") if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """``shortcut`` lets a DLA tree pass its own projected residual."""
        if shortcut is None:
            shortcut = x if self.downsample is None else self.downsample(x)

        out = norm_relu(self.bn1, self.relu, self.conv1(x))
        groups = torch.split(out, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        current = groups[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            current = groups[i] if i == 0 or self.stage_first else current + groups[i]
            current = norm_relu(bn, self.relu, conv(current))
            outputs.append(current)
        if self.scale > 1:
            outputs.append(self.pool(groups[-1]) if self.pool is not None else groups[-1])
        out = self.conv3(torch.cat(outputs, dim=1))
        if (isinstance(self.bn3, TrainingBatchNorm2d) and isinstance(self.drop_path, nn.Identity)
                and not isinstance(out, fx.Proxy)):
            return self.bn3(out, relu=True, residual=shortcut)  # one fused pass where it can be
        return self.relu(self.drop_path(self.bn3(out)) + shortcut)

    def zero_init_last(self) -> None:
        """Start the residual branch at zero so a deep net begins as a shallow one."""
        nn.init.zeros_(self.bn3.weight)
