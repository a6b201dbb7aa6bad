"""Arrange the flat ILSVRC2012 validation folder into class folders (``res2net prepare-imagenet``).

ImageNet's validation images come as 50,000 files in one folder, with labels in the devkit's
``ILSVRC2012_validation_ground_truth.txt``: one 1-based ILSVRC2012_ID per line, in file-name
order. Those IDs index the devkit's own synset order (``data/meta.mat``), which is *not* the
sorted WordNet-ID order that class folders use, so the synset list must come from the devkit
(``meta.mat`` directly, or a text file with one WNID per line in ILSVRC2012_ID order); mixing
up the two orders would silently mislabel every image.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from res2net.data.folder import IMG_EXTENSIONS
from res2net.errors import DataError
from res2net.progress import progress

_NUM_IMAGENET_CLASSES = 1000


def read_synsets(path: Path) -> list[str]:
    """WNIDs in ILSVRC2012_ID order from the devkit's ``meta.mat`` or a one-per-line text file."""
    if not path.is_file():
        raise DataError(f"synset file {path} not found")
    if path.suffix.lower() == ".mat":
        return _synsets_from_meta_mat(path)
    lines = path.read_text().splitlines()
    synsets = [line.split()[0] for line in lines if line.strip()]
    if not synsets:
        raise DataError(f"synset file {path} is empty")
    return synsets


def _synsets_from_meta_mat(path: Path) -> list[str]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading meta.mat needs scipy (pip install scipy), or pass a text synset list") from None
    try:
        table = loadmat(str(path), squeeze_me=True)["synsets"]
        leaves = [(int(row["ILSVRC2012_ID"]), str(row["WNID"])) for row in table if int(row["num_children"]) == 0]
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise DataError(f"{path} is not an ILSVRC2012 devkit meta.mat ({err})") from err
    return [wnid for _, wnid in sorted(leaves)][:_NUM_IMAGENET_CLASSES]


def prepare_imagenet_val(
    flat_val_dir: Path,
    ground_truth_file: Path,
    out_dir: Path,
    synsets: Sequence[str] | Path,
    *,
    copy: bool = False,
) -> dict[str, int]:
    """Hard-link (or copy) each validation image into ``out_dir/<wnid>/``; returns counts.

    Files already in place are left alone, so an interrupted run can simply be repeated.
    Hard links fall back to copies across file systems.
    """
    flat_val_dir, out_dir = Path(flat_val_dir), Path(out_dir)
    names = list(synsets) if not isinstance(synsets, Path) else read_synsets(synsets)
    if not flat_val_dir.is_dir():
        raise DataError(f"validation folder {flat_val_dir} does not exist")
    images = sorted(
        e.name for e in os.scandir(flat_val_dir) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)
    )
    labels = _read_labels(Path(ground_truth_file), len(names))
    if len(images) != len(labels):
        raise DataError(
            f"{flat_val_dir} has {len(images)} images but {ground_truth_file} has {len(labels)} labels"
        )
    linked = copied = present = 0
    for image, label in progress(zip(images, labels, strict=True), description="arrange val", total=len(images),
                                 unit="img"):
        folder = out_dir / names[label - 1]
        folder.mkdir(parents=True, exist_ok=True)
        source, target = flat_val_dir / image, folder / image
        if target.exists() and target.stat().st_size == source.stat().st_size:
            present += 1
            continue
        if not copy:
            try:
                os.link(source, target)
                linked += 1
                continue
            except OSError:
                pass
        shutil.copyfile(source, target)
        copied += 1
    return {"images": len(images), "classes": len(set(labels)), "linked": linked, "copied": copied, "present": present}


def _read_labels(path: Path, num_classes: int) -> list[int]:
    if not path.is_file():
        raise DataError(f"ground-truth file {path} not found")
    labels: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            label = int(line)
        except ValueError:
            raise DataError(f"{path}:{number}: expected a class number, got {line.strip()!r}") from None
        if not 1 <= label <= num_classes:
            raise DataError(f"{path}:{number}: label {label} is outside 1..{num_classes} (the synset list's size)")
        labels.append(label)
    return labels


def run_prepare_imagenet(args: argparse.Namespace) -> int:
    """CLI body: arrange the folder and print one summary line."""
    counts = prepare_imagenet_val(args.val_dir, args.ground_truth, args.out_dir, args.synsets, copy=args.copy)
    print(
        f"{args.out_dir}: {counts['images']} images in {counts['classes']} classes "
        f"({counts['linked']} linked, {counts['copied']} copied, {counts['present']} already there)"
    )
    return 0
