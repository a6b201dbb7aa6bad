"""Features-only wrapper: a backbone that returns the chosen stage maps.

Detection and segmentation necks (FPN, DeepLab heads) consume several stage outputs
instead of logits. The wrapper keeps the backbone's module names, so a checkpoint
loaded into the full model before wrapping keeps every weight, and it drops the
head and any stage after the last one requested.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .common import ClassifierBackbone, FeatureInfo


class FeatureExtractor(nn.ModuleDict):
    """Runs a backbone's stages in order and returns the maps at ``out_indices``.

    ``feature_info`` lists the returned maps only, in order, like timm's
    ``features_only`` models, so users can size their necks from it.
    """

    def __init__(self, backbone: ClassifierBackbone, out_indices: Sequence[int]) -> None:
        stages = backbone.feature_stages()
        indices = tuple(out_indices)
        if not indices or any(not 0 <= i < len(stages) for i in indices) or list(indices) != sorted(set(indices)):
            raise ValueError(f"out_indices must be increasing indices in 0..{len(stages) - 1}, got {indices}")
        kept_stages = stages[: indices[-1] + 1]
        super().__init__({name: getattr(backbone, name) for names in kept_stages for name in names})
        self._stage_ends = [names[-1] for names in kept_stages]
        self.out_indices = indices
        self.feature_info: list[FeatureInfo] = [backbone.feature_info[i] for i in indices]
        self.pretrained_cfg = backbone.pretrained_cfg

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        stage = 0
        for name, module in self.items():
            x = module(x)
            if name == self._stage_ends[stage]:
                if stage in self.out_indices:
                    outputs.append(x)
                stage += 1
        return outputs
