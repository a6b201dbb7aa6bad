"""The ResNet-style Res2Net: one network, with stem, shortcut and block sizing as options.

Every ResNet-layout member of the family (26w_4s, 48w_2s, 14w_8s, 26w_6s, 26w_8s, 101,
152, v1b, Res2NeXt) is this class with different arguments; the registry holds the
table. Module names follow timm and the paper's code so their state_dicts load as-is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .blocks import Bottle2neck
from .common import ClassifierBackbone, FeatureInfo, init_weights, stage_geometry
from .layers import ActLayer, NormLayer, make_act

StemType = Literal["plain", "deep"]
ShortcutType = Literal["conv", "avgpool"]
#: The spelling of ``pool_unstrided`` before 0.x: ``"always"`` is True, ``"strided"`` False.
LEGACY_STAGE_FIRST_POOL = {"always": True, "strided": False}

EXPANSION = 4
STAGE_PLANES = (64, 128, 256, 512)


def _plain_stem(in_chans: int) -> nn.Module:
    return nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)


def _deep_stem(in_chans: int, norm_layer: NormLayer, act_layer: ActLayer, stem_width: int = 32) -> nn.Module:
    """Three 3x3 convolutions instead of one 7x7 (the v1b / "d" stem)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, stem_width, 3, stride=2, padding=1, bias=False),
        norm_layer(stem_width),
        make_act(act_layer),
        nn.Conv2d(stem_width, stem_width, 3, stride=1, padding=1, bias=False),
        norm_layer(stem_width),
        make_act(act_layer),
        nn.Conv2d(stem_width, 64, 3, stride=1, padding=1, bias=False),
    )


def _shortcut(kind: ShortcutType, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> nn.Module:
    """Projection for the first block of a stage.

    ``avgpool`` (v1b) averages before a stride-1 1x1 convolution, so the shortcut
    sees every input pixel instead of one in four.
    """
    if kind == "conv":
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                             norm_layer(out_channels))
    pool: nn.Module = (
        nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    )
    return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False), norm_layer(out_channels))


def _pool_unstrided(pool_unstrided: bool, stage_first_pool: str | None) -> bool:
    """``pool_unstrided``, or its value from the deprecated ``stage_first_pool`` spelling."""
    if stage_first_pool is None:
        return pool_unstrided
    if stage_first_pool not in LEGACY_STAGE_FIRST_POOL:
        raise ValueError(f"stage_first_pool must be 'always' or 'strided', got {stage_first_pool!r}")
    warnings.warn("stage_first_pool is deprecated: pass pool_unstrided=True ('always') or False ('strided')",
                  DeprecationWarning, stacklevel=3)
    return LEGACY_STAGE_FIRST_POOL[stage_first_pool]


class Res2Net(ClassifierBackbone):
    """Res2Net / Res2NeXt with a ResNet layout.

    Args:
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for 50 layers.
        base_width: width of one scale group per 64 planes (the "26w").
        scale: number of scale groups (the "4s").
        cardinality: 3x3 convolution groups; > 1 gives Res2NeXt.
        stem_type: ``plain`` 7x7 convolution or ``deep`` three 3x3 convolutions.
        shortcut_type: ``conv`` strided 1x1, or ``avgpool`` then 1x1 (v1b).
        output_stride: 32, or 16/8 to replace the last strides by dilation.
        dcn_stages: per stage, whether its 3x3 convolutions are deformable (detection
            backbones; mmdetection's ``stage_with_dcn``).
        pool_unstrided: True (the paper's code, timm, MindCV): a stage's first block
            average-pools its last group even at stride 1; False (mmdetection): only when the
            block is strided. Same parameters either way; it matters for outputs.
            (``stage_first_pool="always"|"strided"`` is its deprecated spelling.)
        norm_layer: normalisation class, called with a channel count (``nn.BatchNorm2d``).
        act_layer: activation class (``nn.ReLU``).
    """

    def __init__(
        self,
        layers: tuple[int, ...] | list[int],
        *,
        base_width: int = 26,
        scale: int = 4,
        cardinality: int = 1,
        stem_type: StemType = "plain",
        shortcut_type: ShortcutType = "conv",
        num_classes: int = 1000,
        in_chans: int = 3,
        output_stride: int = 32,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        dcn_stages: Sequence[bool] = (False, False, False, False),
        pool_unstrided: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        stage_first_pool: str | None = None,
    ) -> None:
        super().__init__()
        if len(dcn_stages) != len(layers):
            raise ValueError(f"dcn_stages needs one flag per stage ({len(layers)}), got {tuple(dcn_stages)}")
        pool_unstrided = _pool_unstrided(pool_unstrided, stage_first_pool)
        self.conv1 = _plain_stem(in_chans) if stem_type == "plain" else _deep_stem(in_chans, norm_layer, act_layer)
        self.bn1 = norm_layer(64)
        self.relu = make_act(act_layer)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        strides = (1, 2, 2, 2)
        geometry = stage_geometry(strides, output_stride, stem_reduction=4)
        total_blocks = sum(layers)
        block_index = 0
        in_channels = 64
        reduction = 4
        self.feature_info = [FeatureInfo(channels=64, reduction=2, module="relu")]
        for stage, (num_blocks, planes, geo, deformable) in enumerate(
            zip(layers, STAGE_PLANES, geometry, dcn_stages)
        ):
            out_channels = planes * EXPANSION
            width = int(math.floor(planes * base_width / 64.0)) * cardinality
            blocks: list[nn.Module] = []
            for i in range(num_blocks):
                first = i == 0
                needs_projection = first and (geo.stride != 1 or in_channels != out_channels)
                blocks.append(
                    Bottle2neck(
                        in_channels,
                        width,
                        out_channels,
                        scale=scale,
                        stride=geo.stride if first else 1,
                        stage_first=first,
                        cardinality=cardinality,
                        dilation=geo.first_dilation if first else geo.dilation,
                        downsample=_shortcut(shortcut_type, in_channels, out_channels, geo.stride, norm_layer)
                        if needs_projection
                        else None,
                        drop_path_rate=drop_path_rate * block_index / max(1, total_blocks - 1),
                        deformable=bool(deformable),
                        pool_unstrided=pool_unstrided,
                        norm_layer=norm_layer,
                        act_layer=act_layer,
                    )
                )
                in_channels = out_channels
                block_index += 1
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
            reduction *= geo.stride
            self.feature_info.append(
                FeatureInfo(channels=out_channels, reduction=reduction, module=f"layer{stage + 1}")
            )

        self._init_head(in_channels, num_classes, drop_rate)
        init_weights(self, zero_init_last=zero_init_last)

    def feature_stages(self) -> list[list[str]]:
        return [["conv1", "bn1", "relu"], ["maxpool", "layer1"], ["layer2"], ["layer3"], ["layer4"]]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
