"""Classification evaluation with exact counts, on one process or many.

Each rank evaluates a disjoint shard of the validation set (no padded duplicates),
and raw sums — correct top-1/top-5, loss, samples, the confusion matrix — are added over
ranks before dividing, so the figures are exactly those of a single-process run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import DistContext, all_reduce_sum
from .progress import progress


@dataclass(frozen=True)
class EvalResult:
    """Accuracy in percent, mean loss per sample, and the raw counts behind them."""

    top1: float
    top5: float
    loss: float
    num_samples: int
    seconds: float
    #: confusion[t][p]: images of class t predicted (top-1) as class p.
    confusion: list[list[int]]

    @property
    def per_class_correct(self) -> list[int]:
        return [row[i] for i, row in enumerate(self.confusion)]

    @property
    def per_class_total(self) -> list[int]:
        return [sum(row) for row in self.confusion]

    @property
    def images_per_second(self) -> float:
        return self.num_samples / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "top1": round(self.top1, 4),
            "top5": round(self.top5, 4),
            "loss": round(self.loss, 6),
            "num_samples": self.num_samples,
            "images_per_second": round(self.images_per_second, 2),
        }


def autocast_context(device: torch.device, dtype: str | None) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` for ``dtype`` ("bfloat16"/"float16"), or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    ctx: DistContext,
    amp_dtype: str | None = None,
    channels_last: bool = False,
    description: str | None = None,
    total: int | None = None,
) -> EvalResult:
    """Top-1/top-5 accuracy and cross-entropy of ``model`` over ``batches`` (with a progress bar
    named ``description``, on a terminal, on the main process)."""
    model.eval()
    device = ctx.device
    k = min(5, num_classes)
    # sums: correct@1, correct@k, loss, samples — kept on the device, read once at the end.
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    started = time.perf_counter()
    if description is not None:
        batches = progress(batches, description=description, total=total, main=ctx.is_main, unit="batch")
    for images, targets in batches:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            logits = model(images)
        logits = logits.float()
        topk = logits.topk(k, dim=1).indices
        hit1 = topk[:, 0] == targets
        hitk = (topk == targets[:, None]).any(dim=1)
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        count = torch.tensor(len(targets), device=device)
        sums += torch.stack([hit1.sum(), hitk.sum(), loss_sum, count]).to(torch.float64)
        confusion += torch.bincount(targets * num_classes + topk[:, 0], minlength=num_classes * num_classes)
    sums = all_reduce_sum(sums, ctx)
    confusion = all_reduce_sum(confusion, ctx)
    correct1, correctk, loss_sum, count = sums.tolist()
    count_int = int(count)
    denominator = max(1.0, count)
    return EvalResult(
        top1=100.0 * correct1 / denominator,
        top5=100.0 * correctk / denominator,
        loss=loss_sum / denominator,
        num_samples=count_int,
        seconds=time.perf_counter() - started,
        confusion=confusion.view(num_classes, num_classes).tolist(),
    )
