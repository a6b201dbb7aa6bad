"""scikit-learn's handwritten digits and their fixed stratified train/val split.

Both demo datasets (the classification folders and the detection canvases) draw from here,
so a digit image that one of them uses for training is never in the other's validation set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UserError


@dataclass(frozen=True)
class DigitsSplit:
    """The 1,797 digits as uint8 8x8 images (0..255), their labels and the split's indices."""

    images: np.ndarray
    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray


def load_digits_split(val_fraction: float, seed: int) -> DigitsSplit:
    """The digits with ``val_fraction`` of each class held out (seeded, stratified)."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UserError("the demo datasets need scikit-learn: pip install 'res2net[train]'") from None
    digits = load_digits()
    labels = digits.target
    train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=seed,
                                  stratify=labels)
    return DigitsSplit(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8), labels, train, val)
