"""COCO-format data for the dense tasks: one dataset class serves detection, instance and
semantic segmentation and saliency, read with pycocotools' own COCO API.

The layout is COCO's (``DIR/<split>/`` images, ``DIR/annotations/instances_<split>.json``), so
the demo canvases and a real COCO download load the same way. Semantic masks come from
``DIR/masks/<split>/<image stem>.png`` when present (the demo writes them), otherwise they are
painted from the instance masks in annotation order; the saliency target is "any object".
Category ids map to contiguous labels 1..K (0 is the background), as torchvision's detectors
and the segmentation losses expect.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from ..errors import DataError, UserError


def _coco_api() -> Any:
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise UserError("COCO-format data needs pycocotools: pip install 'res2net[detection]'") from None
    return COCO


@dataclass(frozen=True)
class Category:
    id: int
    name: str


def annotation_file(root: Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}.json"


class CocoDenseDataset(Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images as float tensors in 0..1 and a target dict per image: ``boxes`` (x1, y1, x2, y2),
    ``labels`` (1..K), ``masks`` (uint8 [N, H, W]), ``semantic`` (int64 [H, W], 0 background),
    ``saliency`` (float [1, H, W]) and ``image_id`` (COCO's)."""

    def __init__(self, root: Path, split: str) -> None:
        self.root = Path(root)
        self.split = split
        path = annotation_file(self.root, split)
        if not path.is_file():
            raise DataError(f"no COCO annotations for split {split!r}: {path} does not exist "
                            f"(make the demo set with `res2net demo-data --task detection {self.root}`)")
        coco_class = _coco_api()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
                self.coco = coco_class(str(path))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path} is not a COCO annotation file: {exc}") from None
        self.image_ids = sorted(self.coco.getImgIds())
        if not self.image_ids:
            raise DataError(f"{path} lists no images")
        self.categories = [Category(c["id"], c["name"]) for c in sorted(self.coco.loadCats(self.coco.getCatIds()),
                                                                      key=lambda c: c["id"])]
        self.label_of = {category.id: index + 1 for index, category in enumerate(self.categories)}
        self.category_of = {label: category_id for category_id, label in self.label_of.items()}

    @property
    def num_classes(self) -> int:
        """Labels including the background."""
        return len(self.categories) + 1

    @property
    def annotation_path(self) -> Path:
        return annotation_file(self.root, self.split)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        info = self.coco.loadImgs(image_id)[0]
        image_path = self.root / self.split / info["file_name"]
        try:
            with Image.open(image_path) as img:
                image = pil_to_tensor(img.convert("RGB")).float().div_(255)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {image_path}: {exc}") from None
        height, width = image.shape[-2:]
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        anns = [a for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        masks = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in anns])) if anns else \
            torch.zeros((0, height, width), dtype=torch.uint8)
        semantic = self._semantic(info, masks, labels)
        target = {"boxes": boxes, "labels": labels, "masks": masks, "semantic": semantic,
                  "saliency": (semantic > 0).float().unsqueeze(0), "image_id": torch.tensor(image_id)}
        return image, target

    def _semantic(self, info: dict[str, Any], masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mask_path = self.root / "masks" / self.split / (Path(info["file_name"]).stem + ".png")
        if mask_path.is_file():
            with Image.open(mask_path) as img:
                category_ids = torch.from_numpy(np.asarray(img, dtype=np.int64).copy())
            lookup = torch.zeros(int(category_ids.max()) + 1, dtype=torch.int64)
            for category_id, label in self.label_of.items():
                if category_id < len(lookup):
                    lookup[category_id] = label
            return lookup[category_ids]
        return paint_semantic(masks, labels)


def paint_semantic(masks: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Instance masks painted in order into one label map (later instances on top)."""
    semantic = torch.zeros(masks.shape[-2:], dtype=torch.int64)
    for mask, label in zip(masks, labels):
        semantic[mask.bool()] = label
    return semantic


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list[Any], list[Any]]:
    """Detectors take lists (images may differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
