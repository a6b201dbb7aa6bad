"""Res2Net-DLA: Res2Net bottlenecks inside Deep Layer Aggregation trees.

DLA merges features of several depths through "root" nodes; the paper swaps its
bottleneck for the Res2Net one. Module names follow timm's DLA so timm checkpoints
load directly; the official checkpoints differ only by unused ``project`` layers
(dropped on load) and a 1x1-convolution classifier (reshaped on load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Bottle2neck
from .common import ClassifierBackbone, FeatureInfo, init_weights, stage_geometry
from .layers import ActLayer, NormLayer, make_act

DLA_EXPANSION = 2


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int, norm_layer: NormLayer,
                  act_layer: ActLayer) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        norm_layer(out_channels),
        make_act(act_layer),
    )


@dataclass(frozen=True)
class DlaBlockArgs:
    """Block and layer settings shared by every block of the network."""

    scale: int
    cardinality: int
    base_width: int
    drop_path_rate: float
    norm_layer: NormLayer = nn.BatchNorm2d
    act_layer: ActLayer = nn.ReLU


class DlaBlock(Bottle2neck):
    """A Res2Net bottleneck sized the DLA way: the group width derives from the output
    channels and is halved (DLA's bottleneck expansion is 2, not 4)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        stage_first: bool,
        dilation: int,
        args: DlaBlockArgs,
    ) -> None:
        width = int(math.floor(out_channels * (args.base_width / 64)) * args.cardinality) // DLA_EXPANSION
        super().__init__(
            in_channels,
            width,
            out_channels,
            scale=args.scale,
            stride=stride,
            stage_first=stage_first,
            cardinality=args.cardinality,
            dilation=dilation,
            drop_path_rate=args.drop_path_rate,
            norm_layer=args.norm_layer,
            act_layer=args.act_layer,
        )


class DlaRoot(nn.Module):
    """Aggregation node: 1x1 convolution over the concatenated children."""

    def __init__(self, in_channels: int, out_channels: int, args: DlaBlockArgs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = args.norm_layer(out_channels)
        self.relu = make_act(args.act_layer)

    def forward(self, children: list[torch.Tensor]) -> torch.Tensor:
        return self.relu(self.bn(self.conv(torch.cat(children, dim=1))))


class DlaTree(nn.Module):
    """A DLA tree of ``levels`` levels; leaves are two blocks joined by a root.

    ``stride`` is the nominal downsampling of the tree; with dilation it is realised
    as stride 1 and dilated 3x3 convolutions, while ``stage_first`` keeps the first
    block's Res2Net "stage" behaviour so pretrained weights keep their meaning.
    """

    def __init__(
        self,
        levels: int,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        stage_first: bool,
        dilation: int,
        block_args: DlaBlockArgs,
        level_root: bool = False,
        root_dim: int = 0,
    ) -> None:
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        self.level_root = level_root
        # ceil_mode keeps the pooled shortcut the size of the strided-convolution path on odd
        # inputs (e.g. 100x100); on even sizes it is identical to the paper's floor pooling.
        self.downsample: nn.Module = (
            nn.MaxPool2d(stride, stride=stride, ceil_mode=True) if stride > 1 else nn.Identity()
        )
        self.project: nn.Module = nn.Identity()
        self.root: DlaRoot | None = None
        if levels == 1:
            self.tree1: nn.Module = DlaBlock(
                in_channels, out_channels, stride=stride, stage_first=stage_first, dilation=dilation, args=block_args
            )
            self.tree2: nn.Module = DlaBlock(
                out_channels, out_channels, stride=1, stage_first=False, dilation=dilation, args=block_args
            )
            if in_channels != out_channels:
                self.project = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, bias=False), block_args.norm_layer(out_channels)
                )
            self.root = DlaRoot(root_dim, out_channels, block_args)
        else:
            self.tree1 = DlaTree(
                levels - 1,
                in_channels,
                out_channels,
                stride=stride,
                stage_first=stage_first,
                dilation=dilation,
                block_args=block_args,
            )
            self.tree2 = DlaTree(
                levels - 1,
                out_channels,
                out_channels,
                stride=1,
                stage_first=False,
                dilation=dilation,
                block_args=block_args,
                root_dim=root_dim + out_channels,
            )

    def forward(
        self, x: torch.Tensor, shortcut: torch.Tensor | None = None, children: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        children = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, self.project(bottom))
        if self.root is not None:
            return self.root([self.tree2(x1), x1, *children])
        children.append(x1)
        return self.tree2(x1, None, children)


class Res2NetDLA(ClassifierBackbone):
    """DLA-60 with Res2Net (``cardinality=1``) or Res2NeXt (``cardinality>1``) blocks."""

    def __init__(
        self,
        levels: tuple[int, ...] = (1, 1, 1, 2, 3, 1),
        channels: tuple[int, ...] = (16, 32, 128, 256, 512, 1024),
        *,
        base_width: int = 28,
        scale: int = 4,
        cardinality: int = 1,
        num_classes: int = 1000,
        in_chans: int = 3,
        output_stride: int = 32,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.base_layer = _conv_bn_relu(in_chans, channels[0], 7, 1, norm_layer, act_layer)
        self.level0 = _conv_bn_relu(channels[0], channels[0], 3, 1, norm_layer, act_layer)
        self.level1 = _conv_bn_relu(channels[0], channels[1], 3, 2, norm_layer, act_layer)
        # Trees nest to different depths, so stochastic depth uses one rate for every
        # block rather than ResNet's linear ramp over block index.
        block_args = DlaBlockArgs(scale, cardinality, base_width, drop_path_rate, norm_layer, act_layer)
        geometry = stage_geometry((2, 2, 2, 2), output_stride, stem_reduction=2)
        self.feature_info = [FeatureInfo(channels=channels[1], reduction=2, module="level1")]
        reduction = 2
        for index, geo in enumerate(geometry, start=2):
            tree = DlaTree(
                levels[index],
                channels[index - 1],
                channels[index],
                stride=geo.stride,
                stage_first=True,
                dilation=geo.dilation,
                block_args=block_args,
                level_root=index > 2,
            )
            setattr(self, f"level{index}", tree)
            reduction *= geo.stride
            self.feature_info.append(FeatureInfo(channels=channels[index], reduction=reduction, module=f"level{index}"))
        self._init_head(channels[-1], num_classes, drop_rate)
        init_weights(self, zero_init_last=zero_init_last)

    def feature_stages(self) -> list[list[str]]:
        return [["base_layer", "level0", "level1"], ["level2"], ["level3"], ["level4"], ["level5"]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for names in self.feature_stages():
            for name in names:
                x = getattr(self, name)(x)
        return x
