"""Recipe keys -> datasets, loaders and batch mixing for a training run.

The data package takes plain arguments; this module is the one place that knows
which recipe key feeds which argument (``drop_remainder`` -> ``drop_last``,
``num_parallel_workers`` -> ``num_workers``, ``cutmix_prob`` -> mixing probability...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..data import (
    ImageFolderDataset,
    MixupCutmix,
    build_eval_loader,
    build_eval_transform,
    build_loader,
    build_train_transform,
    check_same_classes,
    set_epoch,
)
from ..distributed import DistContext

#: MindCV's create_loader switches between mixup and cutmix with this probability.
MINDCV_SWITCH_PROB = 0.5
#: The reader behind each ``dataset`` value (the schema's ``DATASETS`` lists the same names).
DATASET_READERS: dict[str, type[ImageFolderDataset]] = {"imagenet": ImageFolderDataset}


def dataset_reader(cfg: Config) -> type[ImageFolderDataset]:
    """The dataset class for ``cfg.dataset``."""
    return DATASET_READERS[cfg.dataset]


def eval_dataset(cfg: Config) -> ImageFolderDataset:
    """The validation split with the recipe's eval preprocessing."""
    transform = build_eval_transform(
        image_size=cfg.image_resize, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
        mean=cfg.mean, std=cfg.std,
    )
    return dataset_reader(cfg)(cfg.data_dir, cfg.val_split, transform=transform)


def eval_loader(cfg: Config, dataset: ImageFolderDataset, ctx: DistContext) -> DataLoader:
    return build_eval_loader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_parallel_workers,
        distributed=ctx.distributed,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=True,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
    )


def without_empty_batches(loader: Iterable[Any]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Drop the ``None`` batches the loader yields when every image in them was unreadable."""
    return (batch for batch in loader if batch is not None)


@dataclass
class TrainData:
    """The run's datasets and loaders, and the batch-level mixing (mixup/cutmix)."""

    train_set: ImageFolderDataset
    val_set: ImageFolderDataset | None
    train_loader: DataLoader
    val_loader: DataLoader | None
    mixer: MixupCutmix | None
    num_classes: int

    @property
    def class_names(self) -> list[str]:
        return list(self.train_set.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    @property
    def num_val(self) -> int:
        return len(self.val_set) if self.val_set is not None else 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def val_batches(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """A fresh pass over this rank's validation shard."""
        return without_empty_batches(self.val_loader) if self.val_loader is not None else ()

    def train_loader_for_epoch(self, epoch: int) -> DataLoader:
        """The training loader positioned at ``epoch`` (a fresh, seeded order per epoch)."""
        set_epoch(self.train_loader, epoch)
        return self.train_loader

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply mixup/cutmix when the recipe asks for it; targets stay class indices otherwise."""
        if self.mixer is None:
            return images, targets
        return self.mixer(images, targets)

    def skipped_images(self) -> int:
        """Unreadable training images skipped since the last call (for the epoch summary)."""
        return self.train_set.skipped.reset()


def build_mixer(cfg: Config, num_classes: int, *, seed: int) -> MixupCutmix | None:
    """MindCV's batch mixing from the recipe: Beta(mixup) / Beta(cutmix), applied with probability
    ``cutmix_prob``, cutmix chosen half the time when both are on (MindCV's switch probability).

    MindCV smooths labels in the loss after mixing; smoothing is linear, so smoothing the two
    one-hot labels before mixing (here) gives the same targets, and the loss leaves them alone.
    """
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    return MixupCutmix(
        num_classes=num_classes,
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.cutmix_prob,
        switch_prob=MINDCV_SWITCH_PROB,
        label_smoothing=cfg.label_smoothing,
        seed=seed,
    )


def build_train_data(cfg: Config, ctx: DistContext) -> TrainData:
    train_transform = build_train_transform(
        image_size=cfg.image_resize,
        scale=cfg.scale,
        ratio=cfg.ratio,
        interpolation=cfg.interpolation,
        hflip=cfg.hflip,
        vflip=cfg.vflip,
        color_jitter=cfg.color_jitter,
        auto_augment=cfg.auto_augment,
        re_prob=cfg.re_prob,
        re_scale=cfg.re_scale,
        re_ratio=cfg.re_ratio,
        re_value=cfg.re_value,
        re_max_attempts=cfg.re_max_attempts,
        mean=cfg.mean,
        std=cfg.std,
    )
    train_set = dataset_reader(cfg)(
        cfg.data_dir, cfg.train_split, transform=train_transform, num_samples=cfg.num_samples, subset_seed=cfg.seed
    )
    val_set = eval_dataset(cfg) if cfg.val_while_train else None
    if val_set is not None:
        check_same_classes(train_set, val_set)
    num_classes = cfg.num_classes or len(train_set.classes)
    train_loader = build_loader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=cfg.shuffle,
        drop_last=cfg.drop_remainder,
        num_workers=cfg.num_parallel_workers,
        distributed=ctx.distributed,
        seed=cfg.seed,
        aug_repeats=cfg.aug_repeats,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=True,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
    )
    mixer = build_mixer(cfg, num_classes, seed=cfg.seed + ctx.rank)
    val_loader = eval_loader(cfg, val_set, ctx) if val_set is not None else None
    return TrainData(train_set, val_set, train_loader, val_loader, mixer, num_classes)

