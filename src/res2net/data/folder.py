"""ImageNet-style folder datasets: ``<data_dir>/<split>/<class>/<image>``.

Layout problems are found when the dataset is built (before any training starts) and raised as
:class:`~res2net.errors.DataError` with one line saying what is wrong and where. Problems inside
individual files are only discovered when a sample is decoded, possibly days into a run; those
samples are skipped with a warning naming the file, counted in a counter that DataLoader worker
processes share with the main process (:class:`SkipCounter`), and dropped from the batch by :func:`collate_skipping`.

Augmentation randomness is made a function of the sample, not of which worker loads it: the
samplers in :mod:`res2net.data.sampler` yield ``(index, seed)`` pairs and the dataset seeds
torch's generator with ``seed`` around the transform. That is what makes a resumed run see the
same augmented images as an uninterrupted one, whatever the worker count.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from res2net.data.decode import EncodedImage, ImageDecodeError, decode_rgb
from res2net.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")

Sample = tuple[torch.Tensor, int]
SampleKey = int | tuple[int, int]


class CorruptImageWarning(UserWarning):
    """An image in the dataset could not be decoded and was skipped."""


class SkipCounter:
    """A count of skipped samples shared by the main process and DataLoader worker processes.

    The count lives in a shared-memory tensor that torch hands to workers under both the fork
    and spawn start methods (a ``multiprocessing.Value`` is tied to one start method). Each
    process adds to its own slot (workers by worker id, the main process in slot 0), so no
    increment can be lost without a lock.
    """

    max_workers = 1023

    def __init__(self) -> None:
        self._slots = torch.zeros(self.max_workers + 1, dtype=torch.int64).share_memory_()

    def increment(self) -> None:
        worker = get_worker_info()
        slot = 0 if worker is None else worker.id + 1
        if slot > self.max_workers:
            raise RuntimeError(f"SkipCounter supports at most {self.max_workers} DataLoader workers")
        self._slots[slot] += 1

    @property
    def value(self) -> int:
        return int(self._slots.sum())

    def reset(self) -> int:
        """Set the count back to zero and return what it was (call between epochs, while workers are idle)."""
        previous = self.value
        self._slots.zero_()
        return previous


def find_classes(split_dir: Path) -> list[str]:
    """Sorted class folder names in ``split_dir``; DataError if there are none."""
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image files>)")
    return classes


def split_dir(data_dir: str | os.PathLike[str], split: str) -> Path:
    """``data_dir/split``, checked to exist; DataError naming the splits that do exist otherwise."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data_dir {root} does not exist or is not a directory")
    path = root / split
    if not path.is_dir():
        found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        raise DataError(f"split folder {path} not found (folders in {root}: {', '.join(found) or 'none'})")
    return path


def check_same_classes(train: ImageFolderDataset, val: ImageFolderDataset) -> None:
    """DataError if the training and validation splits do not have identical class folders."""
    if train.classes == val.classes:
        return
    only_train = sorted(set(train.classes) - set(val.classes))
    only_val = sorted(set(val.classes) - set(train.classes))
    raise DataError(
        f"class folders differ between {train.root} and {val.root}: "
        f"{len(only_train)} only in {train.root.name} {_examples(only_train)}, "
        f"{len(only_val)} only in {val.root.name} {_examples(only_val)}"
    )


class ImageFolderDataset(Dataset[Sample | None]):
    """Images under ``<data_dir>/<split>/<class>/``, labelled by sorted class folder name.

    ``num_samples`` keeps a fixed random subset (chosen by ``subset_seed``, kept in file order)
    for quick runs. ``transform`` receives an :class:`EncodedImage`; without one, samples are
    decoded to uint8 (3, H, W) tensors. Items are ``(image, label)``, or ``None`` for an
    unreadable image (see :func:`collate_skipping`).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[[EncodedImage], torch.Tensor] | None = None,
        num_samples: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        self.root = split_dir(data_dir, split)
        self.classes = find_classes(self.root)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = self._scan()
        if num_samples is not None:
            self.samples = _subset(self.samples, num_samples, subset_seed)
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.skipped = SkipCounter()

    def _scan(self) -> list[tuple[Path, int]]:
        samples: list[tuple[Path, int]] = []
        empty: list[str] = []
        for name in self.classes:
            folder = self.root / name
            files = sorted(
                e.name
                for e in os.scandir(folder)
                if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMG_EXTENSIONS)
            )
            if not files:
                empty.append(name)
            samples.extend((folder / f, self.class_to_idx[name]) for f in files)
        if empty:
            raise DataError(
                f"{len(empty)} class folder(s) in {self.root} contain no images {_examples(empty)} "
                f"(extensions: {' '.join(IMG_EXTENSIONS)})"
            )
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> Sample | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[index]
        try:
            encoded = EncodedImage.read(path)
            if self.transform is None:
                return decode_rgb(encoded)[0], label
            if seed is None:
                return self.transform(encoded), label
            return _seeded(seed, self.transform, encoded), label
        except ImageDecodeError as err:
            warnings.warn(f"skipping unreadable image {err}", CorruptImageWarning, stacklevel=2)
            self.skipped.increment()
            return None


def _seeded(seed: int, transform: Callable[[EncodedImage], torch.Tensor], image: EncodedImage) -> torch.Tensor:
    """Run ``transform`` with torch's CPU generator seeded, restoring the caller's generator state.

    Restoring matters with ``num_workers=0``, where the transform runs in the training process
    and must not disturb its random stream (dropout, mixup).
    """
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)
    try:
        return transform(image)
    finally:
        torch.set_rng_state(state)


def collate_skipping(batch: Sequence[Sample | None]) -> Any:
    """``default_collate`` without the ``None`` items of unreadable images.

    Returns ``None`` when every image of the batch was unreadable; the training loop skips
    such a batch (the skipped images are counted by the dataset).
    """
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None


def _subset(samples: list[tuple[Path, int]], num_samples: int, seed: int) -> list[tuple[Path, int]]:
    if num_samples <= 0:
        raise DataError(f"num_samples must be positive, got {num_samples}")
    if num_samples >= len(samples):
        return samples
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(samples), generator=generator)[:num_samples].sort().values
    return [samples[i] for i in chosen.tolist()]


def _examples(names: Sequence[str], limit: int = 3) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    return f"({shown}{', ...' if len(names) > limit else ''})"
