"""Drawing a dense model's predictions: boxes with class and score, instance or semantic masks,
saliency overlays, with torchvision's ``draw_bounding_boxes`` / ``draw_segmentation_masks``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms.functional import pil_to_tensor, to_pil_image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ..errors import DataError
from ..inference.predict import collect_images, open_image
from .config import Task

MASK_THRESHOLD = 0.5


def _read(path: Path) -> torch.Tensor:
    try:
        return pil_to_tensor(open_image(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def predict_images(
    model: nn.Module, task: Task, class_names: Sequence[str], paths: Sequence[Path], output: Path, *,
    score_threshold: float, device: torch.device,
) -> Iterator[dict[str, Any]]:
    """Predict and draw each image into ``output``; yields one record per image."""
    model.eval()
    output.mkdir(parents=True, exist_ok=True)
    for path in collect_images([str(p) for p in paths]):
        drawing, record = draw_prediction(model, task, class_names, _read(path), score_threshold=score_threshold,
                                          device=device)
        target = output / f"{path.stem}.png"
        to_pil_image(drawing).save(target)
        yield {"image": str(path), "drawing": str(target), **record}


def draw_prediction(
    model: nn.Module, task: Task, class_names: Sequence[str], image: torch.Tensor, *, score_threshold: float,
    device: torch.device,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One ``uint8`` (3, H, W) image -> its drawing (boxes, masks or the saliency map) and a JSON-able record
    with a one-line ``summary``. The model is in eval mode; the caller chooses grad mode and autocast."""
    pixels = image.float().div(255).to(device)
    if task in ("detection", "instance"):
        return _draw_detections(model([pixels])[0], image, class_names, score_threshold)
    if task == "semantic":
        return _draw_semantic(model(pixels[None])["out"][0].float(), image, class_names)
    return _draw_saliency(model(pixels[None])["out"][0, 0].float(), image)


def _draw_detections(
    result: dict[str, torch.Tensor], image: torch.Tensor, class_names: Sequence[str], threshold: float
) -> tuple[torch.Tensor, dict[str, Any]]:
    keep = result["scores"] >= threshold
    boxes, scores, labels = result["boxes"][keep].cpu(), result["scores"][keep].cpu(), result["labels"][keep].cpu()
    names = [class_names[int(label) - 1] for label in labels]
    drawing = image
    if "masks" in result and keep.any():
        drawing = draw_segmentation_masks(drawing, result["masks"][keep][:, 0].cpu() > MASK_THRESHOLD, alpha=0.45)
    if len(boxes):
        drawing = draw_bounding_boxes(drawing, boxes, [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())],
                                      colors="red", width=1)
    detections = [{"label": n, "score": round(float(s), 4), "box": [round(v, 1) for v in b.tolist()]}
                  for n, s, b in zip(names, scores, boxes)]
    summary = f"{len(detections)} objects" + (f": {' '.join(names)}" if names else "")
    return drawing, {"summary": summary, "detections": detections}


def _draw_semantic(
    logits: torch.Tensor, image: torch.Tensor, class_names: Sequence[str]
) -> tuple[torch.Tensor, dict[str, Any]]:
    labels = logits.argmax(0).cpu()
    present = [int(v) for v in labels.unique() if int(v) > 0]
    drawing = image
    if present:
        drawing = draw_segmentation_masks(image, torch.stack([labels == v for v in present]), alpha=0.55)
    names = [class_names[v - 1] for v in present]
    return drawing, {"summary": f"classes present: {' '.join(names) or 'none'}", "classes": names}


def _draw_saliency(logits: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
    salient = torch.sigmoid(logits).cpu() > MASK_THRESHOLD
    drawing = draw_segmentation_masks(image, salient[None], alpha=0.55, colors="yellow")
    share = float(salient.float().mean())
    return drawing, {"summary": f"salient share {share:.3f}", "salient_fraction": round(share, 4)}
