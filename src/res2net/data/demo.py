"""The demo dataset: scikit-learn's handwritten digits as an ImageNet-style JPEG folder.

A real (if small) image classification dataset that ships inside scikit-learn, so the README's
train -> validate walkthrough needs no download: 1,797 8x8 greyscale digits, upscaled with bicubic
interpolation, stored as RGB JPEGs in ``train/<digit>/`` and ``val/<digit>/`` with a fixed
stratified split. The same arguments always give the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from PIL import Image

from res2net.errors import DataError

from .digits import load_digits_split
from .markers import recorded_counts, write_marker

_MARKER = ".res2net-digits.json"
_JPEG_QUALITY = 95


def write_digits_dataset(
    root: Path, *, image_size: int = 64, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Write the digits under ``root``; returns counts per split and whether anything was written.

    Idempotent: a marker file, written last, records the arguments and counts; when it matches
    and the files are all there, nothing is rewritten. An interrupted or differently configured
    earlier run is simply overwritten.
    """
    if image_size < 8:
        raise DataError(f"image_size must be at least 8 (the digits are 8x8), got {image_size}")
    root = Path(root)
    params = {"image_size": image_size, "val_fraction": val_fraction, "seed": seed}
    existing = _complete_marker(root, params)
    if existing is not None:
        return {**existing, "written": False}

    digits = load_digits_split(val_fraction, seed)
    images, labels = digits.images, digits.labels
    counts: dict[str, Any] = {"num_classes": int(labels.max()) + 1}
    for split, chosen in (("train", digits.train), ("val", digits.val)):
        for index in sorted(chosen.tolist()):
            folder = root / split / str(labels[index])
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(images[index]).resize((image_size, image_size), Image.Resampling.BICUBIC)
            img.convert("RGB").save(folder / f"{index:04d}.jpg", quality=_JPEG_QUALITY)
        counts[split] = len(chosen)
    write_marker(root / _MARKER, params, counts)
    return {**counts, "written": True}


def _complete_marker(root: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded counts if ``root`` holds a finished dataset made with ``params``, else None."""
    counts = recorded_counts(root / _MARKER, params)
    if counts is None:
        return None
    for split in ("train", "val"):
        found = sum(1 for _ in (root / split).glob("*/*.jpg"))
        if found != counts.get(split):
            return None
    return dict(counts)


def run_demo_data(args: argparse.Namespace) -> int:
    """CLI body: write the dataset and print one line with the counts."""
    if args.task == "detection":
        from .demo_detection import CanvasSpec, write_detection_dataset

        spec = CanvasSpec() if args.image_size is None else CanvasSpec.scaled(args.image_size)
        done = write_detection_dataset(args.dir, spec=spec, val_fraction=args.val_fraction, seed=args.seed)
        state = "wrote" if done["written"] else "already complete:"
        splits = (f"{split} {done[split]['images']} canvases / {done[split]['objects']} digits"
                  for split in ("train", "val"))
        print(f"{state} {args.dir}: " + ", ".join(splits))
        return 0
    counts = write_digits_dataset(args.dir, image_size=args.image_size or 64, val_fraction=args.val_fraction,
                                  seed=args.seed)
    state = "wrote" if counts["written"] else "already complete:"
    print(f"{state} {args.dir}: {counts['train']} train / {counts['val']} val images, {counts['num_classes']} classes")
    return 0
