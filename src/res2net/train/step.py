"""One optimisation step's numerics: autocast, loss, scaling, clipping, non-finite checks.

Separated from the epoch loop so the numerics (what happens to one batch) can be
tested and reasoned about without data loading, logging or checkpoints around them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..metrics import autocast_context

# A few bad batches happen (a corrupt image, an fp16 overflow); this many in a row means
# the run has diverged and further steps would only write garbage.
MAX_CONSECUTIVE_NONFINITE = 5


class DivergedError(UserError):
    """The loss stayed NaN/Inf; raised before any checkpoint could be overwritten."""


def classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, *, kind: str, label_smoothing: float, reduction: str = "mean"
) -> torch.Tensor:
    """CE or BCE on hard class indices or soft (mixup/cutmix) target distributions.

    Soft targets arrive already smoothed by the mixer, so smoothing applies to hard ones only.
    ``reduction`` is MindCV's: ``mean`` averages (CE over samples, BCE over every logit) and
    ``sum`` adds up.
    """
    logits = logits.float()
    if targets.ndim == 2:
        label_smoothing = 0.0
    if kind == "CE":
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction=reduction)
    if targets.ndim == 1:
        targets = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    if label_smoothing > 0:
        targets = targets * (1 - label_smoothing) + label_smoothing / logits.shape[1]
    return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)


class StepRunner:
    """Forward/backward with gradient accumulation; ``optimizer_step`` applies an update.

    A step whose gradients are not finite is skipped, so NaN/Inf never reaches the
    weights: under fp16 GradScaler skips it (and lowers its scale), otherwise we do.
    Every rank runs its backward pass even for a non-finite loss, because under DDP
    the gradient all-reduce needs every rank; the NaN then reaches every rank's
    averaged gradients and all ranks skip the same step, keeping the replicas equal.
    ``MAX_CONSECUTIVE_NONFINITE`` non-finite losses in a row stop the run with
    :class:`DivergedError`; ``consecutive_nonfinite`` tells the engine that the
    current weights just produced one (it does not checkpoint them then).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        *,
        device: torch.device,
        amp_dtype: str | None,
        loss_kind: str,
        label_smoothing: float,
        reduction: str = "mean",
        accumulation_steps: int,
        clip_norm: float | None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.device = device
        self.amp_dtype = amp_dtype
        self.loss_kind = loss_kind
        self.label_smoothing = label_smoothing
        self.reduction = reduction
        self.accumulation_steps = accumulation_steps
        self.clip_norm = clip_norm
        self.consecutive_nonfinite = 0
        self.skipped_steps = 0

    def forward_backward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Accumulate gradients for one batch; returns the detached loss."""
        with autocast_context(self.device, self.amp_dtype):
            logits = self.model(images)
        loss = classification_loss(
            logits, targets, kind=self.loss_kind, label_smoothing=self.label_smoothing, reduction=self.reduction
        )
        if not torch.isfinite(loss):
            self.consecutive_nonfinite += 1
            if self.consecutive_nonfinite >= MAX_CONSECUTIVE_NONFINITE:
                raise DivergedError(
                    f"loss was NaN/Inf for {self.consecutive_nonfinite} batches in a row; stopping. "
                    "Lower lr, enable clip_grad, or use amp_level O0; existing checkpoints were kept"
                )
        else:
            self.consecutive_nonfinite = 0
        self.scaler.scale(loss / self.accumulation_steps).backward()
        return loss.detach()

    def optimizer_step(self) -> bool:
        """Unscale, clip, step and clear the accumulated gradients; False if the step was skipped.

        The gradient norm is computed on every step (``clip_norm`` or no limit) because it
        is also the finiteness check: fp32 has no GradScaler to refuse a NaN update.
        """
        self.scaler.unscale_(self.optimizer)
        max_norm = self.clip_norm if self.clip_norm is not None else math.inf
        total_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True)
        finite = bool(torch.isfinite(total_norm))
        if finite or self.scaler.is_enabled():  # an enabled scaler skips non-finite steps itself
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self.skipped_steps += 1
        return finite
