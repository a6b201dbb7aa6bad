"""Class names for classifier rows: ImageNet-1k's, and what a head's extra rows mean.

One fact lives here and nowhere else: MindCV's ImageNet classifiers have 1001 rows, of which
rows 0..999 are ImageNet's classes in the standard order (MindCV labels ImageNet by sorted
synset folder, exactly as torchvision does) and row 1000 is never trained. Every consumer
(predict, serve, validate, export) names rows through :func:`names_for_rows`, so a 1001-row
head gives the same label for the same logits everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

IMAGENET_CLASSES = 1000
#: MindCV's ImageNet heads: ImageNet's 1000 classes, then one row that is never trained.
MINDCV_IMAGENET_ROWS = IMAGENET_CLASSES + 1
UNUSED_ROW = "unused"


@functools.cache
def imagenet_label_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (package data)."""
    text = resources.files("res2net.models").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != IMAGENET_CLASSES:
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} names, expected {IMAGENET_CLASSES}")
    return names


def names_for_rows(label_names: Sequence[str] | None, rows: int) -> list[str]:
    """A name for each of a classifier's ``rows``.

    Rows beyond the known names (MindCV's 1001st) are ``unused_<row>``; without names, rows
    are ``class_<row>``; a head with fewer rows than names keeps the first ones (MindCV's
    1001-row files loaded into a 1000-class model).
    """
    if label_names is None:
        return [f"class_{i}" for i in range(rows)]
    names = list(label_names[:rows])
    return names + [f"{UNUSED_ROW}_{i}" for i in range(len(names), rows)]


def fit_label_names(label_names: Sequence[str] | None, rows: int) -> tuple[str, ...] | None:
    """The names that describe a classifier of ``rows``: all of them, or ImageNet's 1000 for a
    MindCV 1001-row head; None when they describe another head (its classes are unknown)."""
    if label_names is None:
        return None
    if len(label_names) == rows or (len(label_names) == IMAGENET_CLASSES and rows == MINDCV_IMAGENET_ROWS):
        return tuple(label_names)
    return None


def imagenet_classes_for(rows: int | None, label_names: Sequence[str] | None) -> int:
    """The classifier size a model gets from weights with ``rows`` when the user names none:
    the weights' own, except that MindCV's 1001-row ImageNet head becomes ImageNet's 1000
    classes (its unused row dropped, as MindCV's own loader does); weights without a classifier
    (a backbone file) give a model without one (0)."""
    if rows is None:
        return 0
    if rows == MINDCV_IMAGENET_ROWS and (label_names is None or len(label_names) == IMAGENET_CLASSES):
        return IMAGENET_CLASSES
    return rows
