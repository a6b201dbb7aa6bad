"""Scoring a dense model on a COCO-format split: COCO mAP for boxes and instance masks,
mIoU for semantic segmentation, MAE / max-F / S-measure for saliency.

Predictions become COCO result dicts (category ids, ``[x, y, w, h]`` boxes, RLE masks) and
go to the COCO evaluator (:mod:`res2net.detection.coco_eval`); nothing here computes
average precision itself.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..progress import progress
from ..segmentation.metrics import SaliencyMetrics, SegmentationMetrics
from .coco_eval import coco_evaluate
from .config import Task
from .data import CocoDenseDataset, collate_detection

MASK_THRESHOLD = 0.5


def autocast_for(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on CPU, float16 on CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16)


def to_coco_results(
    output: dict[str, torch.Tensor], image_id: int, category_of: dict[int, int], with_masks: bool
) -> list[dict[str, Any]]:
    """One image's detections as COCO result dicts."""
    boxes = output["boxes"].float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    scores = output["scores"].float().cpu().tolist()
    labels = output["labels"].cpu().tolist()
    results = [{"image_id": image_id, "category_id": category_of[label], "bbox": box, "score": score}
               for box, score, label in zip(xywh, scores, labels)]
    if with_masks and results:
        from pycocotools import mask as coco_mask

        binary = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
        for result, mask in zip(results, binary):
            rle = coco_mask.encode(np.asfortranarray(mask))
            result["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
    return results


@torch.inference_mode()
def evaluate_dense(
    model: nn.Module, task: Task, dataset: CocoDenseDataset, device: torch.device, *, batch_size: int = 4,
    num_workers: int = 0, amp: bool = False,
) -> dict[str, Any]:
    """The task's metrics over the whole ``dataset`` (model put in eval mode)."""
    model.eval()
    batches = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                         collate_fn=collate_detection)
    loader = progress(batches, description=f"evaluate {task}", total=len(batches), unit="batch")
    if task in ("detection", "instance"):
        results: list[dict[str, Any]] = []
        for images, targets in loader:
            with autocast_for(device, amp):
                outputs = model([image.to(device) for image in images])
            for output, target in zip(outputs, targets):
                results += to_coco_results(output, int(target["image_id"]), dataset.category_of, task == "instance")
        metrics = {f"bbox_{k}": v for k, v in coco_evaluate(dataset.annotation_path, results, "bbox").items()}
        if task == "instance":
            metrics |= {f"segm_{k}": v for k, v in coco_evaluate(dataset.annotation_path, results, "segm").items()}
        metrics["detections"] = len(results)
        return metrics
    if task == "semantic":
        confusion = SegmentationMetrics(dataset.num_classes)
        for images, targets in loader:
            with autocast_for(device, amp):
                logits = model(torch.stack(images).to(device))["out"]
            confusion.update(logits.argmax(1).cpu(), torch.stack([t["semantic"] for t in targets]))
        return confusion.results()
    saliency = SaliencyMetrics()
    for images, targets in loader:
        with autocast_for(device, amp):
            logits = model(torch.stack(images).to(device))["out"].float()
        saliency.update(torch.sigmoid(logits[:, 0]).cpu(), torch.stack([t["saliency"][0] for t in targets]))
    return saliency.results()
