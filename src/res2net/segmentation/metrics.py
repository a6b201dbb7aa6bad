"""The fields' standard scores: mIoU for semantic segmentation, MAE / max-F / S-measure for
saliency.

mIoU comes from a confusion matrix accumulated over the whole validation set (as
torchvision's segmentation reference and mmsegmentation compute it, not a mean of
per-image IoUs). The saliency scores are PySODMetrics' (``pysodmetrics``, the implementation
the salient-object-detection benchmarks publish with): MAE, the F-measure curve over 256
thresholds with beta^2 = 0.3, averaged over images (its maximum is "max-F"), and the structure measure.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserError


class SegmentationMetrics:
    """Confusion matrix over ``num_classes`` (pixels labelled ``ignore_index`` are skipped)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``predicted`` class indices and ``target`` labels of the same shape."""
        keep = target != self.ignore_index
        index = target[keep].to(torch.int64) * self.num_classes + predicted[keep].to(torch.int64)
        self.confusion += torch.bincount(index.cpu(), minlength=self.num_classes**2).view(
            self.num_classes, self.num_classes
        )

    def results(self) -> dict[str, Any]:
        """``miou`` over classes present in targets or predictions, ``pixel_accuracy``, per-class IoU."""
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_positive
        present = union > 0
        iou = torch.where(present, true_positive / union.clamp(min=1), torch.nan)
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_accuracy": float(true_positive.sum() / confusion.sum().clamp(min=1)),
            "iou": [None if torch.isnan(v) else float(v) for v in iou],
        }


class SaliencyMetrics:
    """PySODMetrics' MAE, F-measure and S-measure over a validation set."""

    def __init__(self) -> None:
        try:
            import py_sod_metrics
        except ImportError:
            raise UserError("saliency metrics use PySODMetrics: pip install 'res2net[detection]'") from None
        self._mae = py_sod_metrics.MAE()
        handler = py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=0.3)
        self._fmeasure = py_sod_metrics.FmeasureV2(metric_handlers={"fm": handler})
        self._smeasure = py_sod_metrics.Smeasure()

    def update(self, probability: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of saliency probabilities ``[N, H, W]`` in 0..1 and binary targets."""
        maps = (probability.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        truths = (target.detach().cpu().numpy() > 0.5).astype(np.uint8) * 255
        for pred, truth in zip(maps, truths):
            self._mae.step(pred, truth)
            self._fmeasure.step(pred, truth)
            self._smeasure.step(pred, truth)

    def results(self) -> dict[str, float]:
        curve = self._fmeasure.get_results()["fm"]["dynamic"]
        return {
            "mae": float(self._mae.get_results()["mae"]),
            "max_f": float(np.max(curve)),
            "mean_f": float(np.mean(curve)),
            "s_measure": float(self._smeasure.get_results()["sm"]),
        }
