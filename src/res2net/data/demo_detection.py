"""The detection demo dataset: the real handwritten digits placed on larger canvases.

``res2net demo-data --task detection DIR`` writes a small COCO-format detection, instance and
semantic segmentation set from scikit-learn's digits, with the same stratified train/val split
as the classification demo (a digit image used for training is never in a validation canvas),
so a digits classifier from the main job is a fair detection backbone. Each canvas holds two to
five digits at random positions and sizes, overlapping at most slightly (so some touch), drawn
in random tints over faint noise::

    DIR/train/000123.png  DIR/val/...            the canvases
    DIR/annotations/instances_{train,val}.json   COCO: boxes, RLE instance masks, categories "0".."9"
    DIR/masks/{train,val}/000123.png             semantic masks: 0 background, k+1 for digit k

Instance masks are the digit strokes (the upscaled digit above a threshold); boxes are the
masks' extents. Where digits overlap, the semantic mask shows the one drawn last, as the
canvas does. The same arguments always give the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError, UserError
from .digits import load_digits_split
from .markers import recorded_counts, write_marker

MARKER = ".res2net-digits-detection.json"
NUM_DIGIT_CLASSES = 10
#: Upscaled digit intensities (0..255) above this are strokes: the instance mask.
STROKE_THRESHOLD = 96
#: Placements may overlap up to this IoU with every earlier digit: touching, never hidden.
MAX_OVERLAP_IOU = 0.1


@dataclass(frozen=True)
class CanvasSpec:
    """Geometry of the generated canvases."""

    canvas_size: int = 128
    min_digits: int = 2
    max_digits: int = 5
    min_digit_size: int = 20
    max_digit_size: int = 44

    @classmethod
    def scaled(cls, canvas_size: int) -> CanvasSpec:
        """The default layout on a canvas of another size (digit sizes scaled with it)."""
        default = cls()
        factor = canvas_size / default.canvas_size
        return cls(canvas_size=canvas_size, min_digit_size=max(8, round(default.min_digit_size * factor)),
                   max_digit_size=max(8, round(default.max_digit_size * factor)))


def category_id(digit: int) -> int:
    """COCO category id of a digit: 1..10 (0 is the background in detectors and masks)."""
    return digit + 1


def write_detection_dataset(
    root: Path, *, spec: CanvasSpec = CanvasSpec(), val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Write the canvases, COCO annotations and semantic masks under ``root``.

    Returns the counts per split and whether anything was written (a complete earlier run with
    the same arguments is left as it is, as for the classification demo).
    """
    if not 8 <= spec.min_digit_size <= spec.max_digit_size <= spec.canvas_size // 2:
        raise DataError(f"digit sizes must satisfy 8 <= min <= max <= canvas/2, got {spec}")
    try:
        from pycocotools import mask as coco_mask
    except ImportError:
        raise UserError("the detection demo data needs pycocotools: pip install 'res2net[detection]'") from None

    root = Path(root)
    params = {"spec": spec.__dict__, "val_fraction": val_fraction, "seed": seed}
    done = _complete(root, params)
    if done is not None:
        return {**done, "written": False}
    digits = load_digits_split(val_fraction, seed)
    counts: dict[str, Any] = {}
    for split_number, (split, chosen) in enumerate((("train", digits.train), ("val", digits.val))):
        rng = np.random.default_rng([seed, split_number])
        coco = _write_split(root, split, sorted(chosen.tolist()), digits.images, digits.labels, spec, rng, coco_mask)
        counts[split] = {"images": len(coco["images"]), "objects": len(coco["annotations"])}
    write_marker(root / MARKER, params, counts)
    return {**counts, "written": True}


def _write_split(
    root: Path, split: str, indices: list[int], images: np.ndarray, labels: np.ndarray, spec: CanvasSpec,
    rng: np.random.Generator, coco_mask: Any,
) -> dict[str, Any]:
    order = rng.permutation(indices).tolist()
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {
        "info": {"description": "res2net digits detection demo (scikit-learn handwritten digits on canvases)"},
        "licenses": [],
        "categories": [{"id": category_id(d), "name": str(d), "supercategory": "digit"}
                       for d in range(NUM_DIGIT_CLASSES)],
        "images": [],
        "annotations": [],
    }
    while order:
        count = min(len(order), int(rng.integers(spec.min_digits, spec.max_digits + 1)))
        chosen, order = order[:count], order[count:]
        image_id = len(coco["images"]) + 1
        canvas, semantic, objects = _compose(chosen, images, labels, spec, rng)
        file_name = f"{image_id:06d}.png"
        Image.fromarray(canvas).save(root / split / file_name)
        Image.fromarray(semantic).save(root / "masks" / split / file_name)
        coco["images"].append({"id": image_id, "file_name": file_name, "width": spec.canvas_size,
                               "height": spec.canvas_size})
        for digit_index, digit, mask in objects:
            rle = coco_mask.encode(np.asfortranarray(mask))
            x, y, w, h = (float(v) for v in coco_mask.toBbox(rle))
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": category_id(digit),
                "bbox": [x, y, w, h], "area": float(coco_mask.area(rle)), "iscrowd": 0,
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "digit_index": digit_index,
            })
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return coco


def _compose(
    chosen: list[int], images: np.ndarray, labels: np.ndarray, spec: CanvasSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, np.ndarray]]]:
    """One canvas (RGB), its semantic mask and (digit index, digit, instance mask) per object."""
    size = spec.canvas_size
    canvas = rng.integers(0, 24, size=(size, size, 3)).astype(np.float32)
    semantic = np.zeros((size, size), dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    objects = []
    for index in chosen:
        side = int(rng.integers(spec.min_digit_size, spec.max_digit_size + 1))
        box = _place(side, size, boxes, rng)
        if box is None:
            continue
        boxes.append(box)
        x0, y0, x1, y1 = box
        glyph = np.asarray(Image.fromarray(images[index]).resize((side, side), Image.Resampling.BICUBIC),
                           dtype=np.float32)
        tint = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
        region = canvas[y0:y1, x0:x1]
        strokes = glyph > STROKE_THRESHOLD
        region[strokes] = glyph[strokes, None] * tint
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[y0:y1, x0:x1] = strokes
        semantic[mask.astype(bool)] = category_id(int(labels[index]))
        objects.append((index, int(labels[index]), mask))
    return np.clip(canvas, 0, 255).astype(np.uint8), semantic, objects


def _place(
    side: int, size: int, boxes: list[tuple[int, int, int, int]], rng: np.random.Generator, attempts: int = 200
) -> tuple[int, int, int, int] | None:
    """A square of ``side`` pixels overlapping every earlier box by at most MAX_OVERLAP_IOU."""
    for _ in range(attempts):
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_iou(box, other) <= MAX_OVERLAP_IOU for other in boxes):
            return box
    return None


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _complete(root: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    counts = recorded_counts(root / MARKER, params)
    if counts is None:
        return None
    for split in ("train", "val"):
        expected = counts.get(split, {}).get("images")
        if sum(1 for _ in (root / split).glob("*.png")) != expected:
            return None
        if sum(1 for _ in (root / "masks" / split).glob("*.png")) != expected:
            return None
    return dict(counts)
