"""Batch-level mixup / cutmix with label smoothing, producing soft targets.

Applied by the training loop to a batch already on the accelerator: the images are mixed with
the batch in reverse order (``flip(0)``), which needs no random permutation on the device. The
few scalar draws per batch (apply?, cutmix or mixup?, lambda, box centre) come from a seeded
NumPy generator whose state is part of :meth:`MixupCutmix.state_dict`, so a resumed run mixes
exactly as the uninterrupted one would.

MindCV recipe keys map as: ``mixup`` -> ``mixup_alpha``, ``cutmix`` -> ``cutmix_alpha``,
``cutmix_prob`` -> ``prob`` (the chance a batch is mixed at all); MindCV switches between the
two with probability 0.5, our ``switch_prob`` default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def smooth_one_hot(targets: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Class indices -> float32 rows with ``1 - smoothing + smoothing / C`` on the true class."""
    off = smoothing / num_classes
    out = torch.full((targets.shape[0], num_classes), off, dtype=torch.float32, device=targets.device)
    return out.scatter_(1, targets.view(-1, 1).long(), 1.0 - smoothing + off)


class MixupCutmix:
    """Mix a batch with its reverse; targets are the matching convex combination of smoothed labels.

    Per batch: with probability ``prob`` it is mixed, by cutmix with probability ``switch_prob``
    when both alphas are positive (otherwise by whichever is enabled); lambda ~ Beta(alpha, alpha).
    For cutmix, lambda is recomputed from the pasted box's area after clipping to the image, so
    the targets match the pixels.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        seed: int = 0,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or (mixup_alpha == 0 and cutmix_alpha == 0):
            raise ValueError(f"need mixup_alpha > 0 or cutmix_alpha > 0 (got {mixup_alpha}, {cutmix_alpha})")
        if not 0 <= prob <= 1 or not 0 <= switch_prob <= 1 or not 0 <= label_smoothing < 1:
            raise ValueError("prob and switch_prob must be in [0, 1] and label_smoothing in [0, 1)")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self._rng = np.random.default_rng(seed)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) images and (N,) class indices -> mixed images and (N, num_classes) soft targets."""
        soft = smooth_one_hot(targets, self.num_classes, self.label_smoothing)
        if self._rng.random() >= self.prob:
            return images, soft
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(self._rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(self._rng.beta(alpha, alpha))
        if use_cutmix:
            images, lam = self._cutmix(images, lam)
        else:
            images = images.mul(lam).add_(images.flip(0), alpha=1.0 - lam)
        partner = soft.flip(0)
        return images, soft.mul_(lam).add_(partner, alpha=1.0 - lam)

    def _cutmix(self, images: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        height, width = images.shape[-2:]
        cut = float(np.sqrt(1.0 - lam))
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = int(self._rng.integers(0, height)), int(self._rng.integers(0, width))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        mixed = images.clone()
        mixed[..., y0:y1, x0:x1] = images.flip(0)[..., y0:y1, x0:x1]
        return mixed, 1.0 - (y1 - y0) * (x1 - x0) / (height * width)

    def state_dict(self) -> dict[str, Any]:
        """The generator state, to store in checkpoints for exact resume."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
