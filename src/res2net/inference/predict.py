"""``res2net predict``: top-k classes for image files and folders, optionally with Grad-CAM.

One unreadable image must not cost the user the others: it is reported as one warning
line naming the file, the rest are predicted, and the exit status says something failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..data.folder import IMG_EXTENSIONS
from ..errors import UserError
from ..progress import progress
from .cam import grad_cam, overlay
from .optimize import optimize_for_inference
from .session import PreprocessInfo, load_model, preprocess_images

BATCH_SIZE = 16
# int8 calibrates on the images being predicted (the only images predict has); more than
# this adds calibration time without changing the ranges much.
MAX_CALIBRATION_IMAGES = 32


@dataclass(frozen=True)
class Prediction:
    """One class of an image's top-k."""

    index: int
    label: str
    probability: float


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS))
        elif path.exists():
            paths.append(path)
        else:
            raise UserError(f"no such file or folder: {path}")
    if not paths:
        raise UserError(f"no images found in {', '.join(inputs)}")
    return paths


def open_image(path: Path) -> Image.Image:
    """Fully decoded RGB image; truncated or non-image files raise ``OSError``/``ValueError``."""
    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def top_k(logits: torch.Tensor, class_names: list[str], k: int) -> list[list[Prediction]]:
    """Per row, the ``k`` most probable classes, most probable first."""
    probabilities = torch.softmax(logits.float(), dim=1)
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    return [
        [Prediction(int(i), class_names[int(i)], float(p)) for p, i in zip(row_p, row_i)]
        for row_p, row_i in zip(values, indices)
    ]


def _cam_path(out_dir: Path, image: Path, used: set[str]) -> Path:
    name = f"{image.stem}_cam.png"
    counter = 1
    while name in used:
        counter += 1
        name = f"{image.stem}_cam_{counter}.png"
    used.add(name)
    return out_dir / name


def _predict_all(
    fast: torch.nn.Module, batch: torch.Tensor, info: PreprocessInfo, k: int
) -> tuple[torch.Tensor, list[list[Prediction]]]:
    logits = torch.cat([fast(batch[i : i + BATCH_SIZE]) for i in range(0, batch.shape[0], BATCH_SIZE)])
    return logits, top_k(logits, info.class_names, k)


def run_predict(args: argparse.Namespace) -> int:
    if args.topk < 1:
        raise UserError(f"--topk must be at least 1, got {args.topk}")
    paths = collect_images(args.images)
    images: list[tuple[Path, Image.Image]] = []
    failed: list[dict[str, str]] = []
    for path in progress(paths, description="read images", unit="img"):
        try:
            images.append((path, open_image(path)))
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"warning: cannot read image {path}: {reason}", file=sys.stderr)
            failed.append({"image": str(path), "error": reason})
    model, info = load_model(
        args.model,
        checkpoint_path=args.checkpoint,
        pretrained=args.pretrained,
        num_classes=args.num_classes,
        labels_file=args.labels,
    )
    results: list[tuple[Path, list[Prediction], Path | None]] = []
    if images:
        batch = preprocess_images([image for _, image in images], info)
        fast = optimize_for_inference(
            model,
            args.precision,
            calibration_images=batch[:MAX_CALIBRATION_IMAGES] if args.precision == "int8" else None,
            example_input_size=info.input_size,
        )
        logits, predictions = _predict_all(fast, batch, info, args.topk)
        cam_files: list[Path | None] = [None] * len(images)
        if args.cam:
            cam_files = _write_cams(model, batch, logits.argmax(dim=1), images, info, Path(args.cam))
        results = [(path, preds, cam) for (path, _), preds, cam in zip(images, predictions, cam_files)]
    if args.json:
        print(json.dumps({"results": [_as_json(*r) for r in results], "failed": failed}, indent=2))
    else:
        for path, preds, cam_file in results:
            print(f"{path}:")
            for p in preds:
                print(f"  {p.probability:.4f}  {p.label} ({p.index})")
            if cam_file is not None:
                print(f"  Grad-CAM: {cam_file}")
    return 1 if failed else 0


def _write_cams(
    model: torch.nn.Module,
    batch: torch.Tensor,
    classes: torch.Tensor,
    images: list[tuple[Path, Image.Image]],
    info: PreprocessInfo,
    out_dir: Path,
) -> list[Path | None]:
    """Grad-CAM of each image's predicted class, drawn over the original image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written: list[Path | None] = []
    for start in range(0, len(images), BATCH_SIZE):
        maps = grad_cam(model, batch[start : start + BATCH_SIZE], classes[start : start + BATCH_SIZE])
        for offset, cam in enumerate(maps):
            path, image = images[start + offset]
            target = _cam_path(out_dir, path, used)
            overlay(image, cam, info.crop_pct).save(target, format="PNG")
            written.append(target)
    return written


def _as_json(path: Path, predictions: list[Prediction], cam_file: Path | None) -> dict[str, object]:
    entry: dict[str, object] = {
        "image": str(path),
        "predictions": [{"index": p.index, "label": p.label, "probability": p.probability} for p in predictions],
    }
    if cam_file is not None:
        entry["cam"] = str(cam_file)
    return entry
