"""Images for int8 calibration: a seeded random sample, never the images that are then scored.

Post-training quantisation sets each activation's range from a few dozen images. Taking them
from the images being evaluated would leak the test set into the model, and taking the first
ones of a class-ordered folder would calibrate on one class (on ImageNet, 32 tench). So
``validate`` draws a seeded sample from the *train* split (or a folder the user names) and
``serve`` from the folder given with ``--calibration-dir``; both say where the images came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.decode import EncodedImage, ImageDecodeError
from ..data.folder import IMG_EXTENSIONS
from ..data.sampler import sample_positions
from ..errors import UserError
from ..progress import progress

DEFAULT_CALIBRATION_IMAGES = 32

Transform = Callable[[EncodedImage], torch.Tensor]


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed float32 ``(N, C, H, W)`` images and a phrase saying where they came from."""

    images: torch.Tensor
    source: str


def image_files(directory: Path, *, what: str) -> list[Path]:
    """Image files under ``directory`` (recursively, sorted); UserError naming ``what`` if none."""
    if not directory.is_dir():
        raise UserError(f"{what} {directory} is not a folder")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise UserError(f"{what} {directory} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return files


def sample_files(files: Sequence[Path], count: int, seed: int) -> list[Path]:
    """``count`` of ``files`` drawn without replacement by a seeded generator, kept in file order."""
    return [files[i] for i in sample_positions(len(files), count, seed)]


def describe_sample(chosen: int, total: int, seed: int, origin: str) -> str:
    """``"32 images (drawn with seed 42 from the 1437) in <origin>"``."""
    drawn = "all" if chosen == total else f"drawn with seed {seed} from the {total}"
    return f"{chosen} images ({drawn}) in {origin}"


def load_calibration(images: Sequence[Path | EncodedImage], transform: Transform, *, source: str) -> CalibrationSet:
    """Preprocess calibration ``images`` (files or encoded images) with ``transform``; ``source``
    says where they came from.

    An unreadable image is a UserError naming it: calibrating on fewer images than asked for
    without saying so would change the quantised model silently.
    """
    tensors = []
    for item in progress(images, description="int8 calibration images", unit="img"):
        try:
            encoded = item if isinstance(item, EncodedImage) else EncodedImage.read(item)
            tensors.append(transform(encoded))
        except ImageDecodeError as err:
            raise UserError(f"calibration image {getattr(item, 'path', item)} cannot be read: {err}") from None
    if not tensors:
        raise UserError(f"no calibration images: {source}")
    return CalibrationSet(torch.stack(tensors), source)
