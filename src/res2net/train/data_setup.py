"""Recipe keys -> datasets, loaders and batch mixing for a training run.

The data package takes plain arguments; this module is the one place that knows
which recipe key feeds which argument (``drop_remainder`` -> ``drop_last``,
``num_parallel_workers`` -> ``num_workers``, ``cutmix_prob`` -> mixing probability...),
and which reader a ``dataset`` value means: image folders or webdataset shards, behind one
interface (train and eval loaders for this rank, a split's size, a sample of its images).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..data import (
    EncodedImage,
    ImageFolderDataset,
    MixupCutmix,
    build_eval_loader,
    build_eval_transform,
    build_loader,
    build_train_transform,
    check_same_classes,
    set_epoch,
)
from ..data.sampler import sample_positions
from ..data.shards import ShardIndex, ShardStream
from ..distributed import DistContext
from ..errors import ConfigError, DataError

#: MindCV's create_loader switches between mixup and cutmix with this probability.
MINDCV_SWITCH_PROB = 0.5


def eval_transform(cfg: Config) -> Any:
    """The recipe's eval preprocessing."""
    return build_eval_transform(
        image_size=cfg.image_resize, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
        mean=cfg.mean, std=cfg.std,
    )


class FolderSource:
    """``dataset: imagenet``: ImageNet-style class folders ``<data_dir>/<split>/<class>/<image>``."""

    def train(self, cfg: Config, ctx: DistContext, transform: Any, drop_last: bool
              ) -> tuple[ImageFolderDataset, DataLoader]:
        dataset = ImageFolderDataset(
            cfg.data_dir, cfg.train_split, transform=transform, num_samples=cfg.num_samples, subset_seed=cfg.seed
        )
        loader = build_loader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=cfg.shuffle,
            drop_last=drop_last,
            num_workers=cfg.num_parallel_workers,
            distributed=ctx.distributed,
            seed=cfg.seed,
            aug_repeats=cfg.aug_repeats,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=True,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
        )
        return dataset, loader

    def eval(self, cfg: Config, ctx: DistContext, transform: Any) -> tuple[ImageFolderDataset, DataLoader]:
        dataset = ImageFolderDataset(cfg.data_dir, cfg.val_split, transform=transform)
        loader = build_eval_loader(
            dataset,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_parallel_workers,
            distributed=ctx.distributed,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=True,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
        )
        return dataset, loader

    def count(self, cfg: Config, split: str) -> int:
        return ImageFolderDataset(cfg.data_dir, split, num_samples=cfg.num_samples, subset_seed=cfg.seed).num_samples

    def images(self, cfg: Config, split: str, count: int, seed: int) -> tuple[list[EncodedImage], str]:
        dataset = ImageFolderDataset(cfg.data_dir, split)
        chosen = sample_positions(dataset.num_samples, count, seed)
        return [EncodedImage.read(dataset.samples[i][0]) for i in chosen], f"the {split} split {dataset.root}"


class ShardSource:
    """``dataset: webdataset``: tar shards written by ``res2net make-shards`` (a folder or a brace
    pattern / URL, see :mod:`res2net.data.shards`)."""

    def _stream(self, cfg: Config, ctx: DistContext, split: str, transform: Any, training: bool,
                drop_last: bool) -> ShardStream:
        if cfg.num_samples is not None or cfg.aug_repeats > 1:
            raise ConfigError("num_samples and aug_repeats apply to image folders; shards are read whole "
                              "(write a smaller shard set with res2net make-shards)")
        return ShardStream(
            ShardIndex.read(cfg.data_dir), split, transform=transform, batch_size=cfg.batch_size, training=training,
            shuffle=cfg.shuffle, drop_last=drop_last, seed=cfg.seed, num_replicas=ctx.world_size,
            rank=ctx.rank,
        )

    def _loader(self, stream: ShardStream, cfg: Config, ctx: DistContext) -> DataLoader:
        # Workers are started per epoch (not persistent) so that each gets the epoch's plan.
        return DataLoader(stream, batch_size=None, num_workers=cfg.num_parallel_workers,
                          pin_memory=ctx.device.type == "cuda")

    def train(self, cfg: Config, ctx: DistContext, transform: Any, drop_last: bool) -> tuple[ShardStream, DataLoader]:
        stream = self._stream(cfg, ctx, cfg.train_split, transform, training=True, drop_last=drop_last)
        return stream, self._loader(stream, cfg, ctx)

    def eval(self, cfg: Config, ctx: DistContext, transform: Any) -> tuple[ShardStream, DataLoader]:
        stream = self._stream(cfg, ctx, cfg.val_split, transform, training=False, drop_last=False)
        return stream, self._loader(stream, cfg, ctx)

    def count(self, cfg: Config, split: str) -> int:
        return ShardIndex.read(cfg.data_dir).num_samples(split)

    def images(self, cfg: Config, split: str, count: int, seed: int) -> tuple[list[EncodedImage], str]:
        stream = ShardStream(ShardIndex.read(cfg.data_dir), split, transform=lambda image: image, batch_size=1,
                             training=False)
        chosen = sample_positions(stream.num_samples, count, seed)
        return stream.encoded_samples(chosen), f"the {split} shards in {cfg.data_dir}"


DataSource = FolderSource | ShardSource
#: The reader behind each ``dataset`` value (the schema's ``DATASETS`` lists the same names).
DATA_SOURCES: dict[str, DataSource] = {"imagenet": FolderSource(), "webdataset": ShardSource()}


def data_source(cfg: Config) -> DataSource:
    """The source for ``cfg.dataset``."""
    return DATA_SOURCES[cfg.dataset]


def eval_data(cfg: Config, ctx: DistContext) -> tuple[ImageFolderDataset | ShardStream, DataLoader]:
    """The validation split with the recipe's eval preprocessing, and this rank's loader over it."""
    return data_source(cfg).eval(cfg, ctx, eval_transform(cfg))


def without_empty_batches(loader: Iterable[Any]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Drop the ``None`` batches the loader yields when every image in them was unreadable."""
    return (batch for batch in loader if batch is not None)


@dataclass
class TrainData:
    """The run's datasets and loaders, and the batch-level mixing (mixup/cutmix)."""

    train_set: ImageFolderDataset | ShardStream
    val_set: ImageFolderDataset | ShardStream | None
    train_loader: DataLoader
    val_loader: DataLoader | None
    mixer: MixupCutmix | None
    num_classes: int
    #: What the run should say once about how its data was set up (e.g. a kept partial batch).
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return list(self.train_set.classes)

    @property
    def num_train(self) -> int:
        return self.train_set.num_samples

    @property
    def num_val(self) -> int:
        return self.val_set.num_samples if self.val_set is not None else 0

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


def training_drop_last(cfg: Config, ctx: DistContext, num_train: int) -> tuple[bool, str | None]:
    """``drop_remainder`` as the recipe says, unless dropping the last partial batch would leave an
    epoch without a single step (a small folder, a large batch): then the partial batch is kept,
    with a note to say so. Fewer than two images per process cannot train (BatchNorm needs two)."""
    per_process = math.ceil(num_train / ctx.world_size)
    if per_process < 2:
        raise DataError(f"the training split has {num_train} image(s) for {ctx.world_size} process(es): "
                        "training needs at least 2 per process (BatchNorm normalises over the batch)")
    if not cfg.drop_remainder or per_process >= cfg.batch_size:
        return cfg.drop_remainder, None
    return False, (f"note: the training split has {per_process} images per process, fewer than one batch of "
                   f"{cfg.batch_size}; drop_remainder would leave every epoch without a step, so each epoch "
                   f"trains on one batch of {per_process}")


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
    source = data_source(cfg)
    drop_last, note = training_drop_last(cfg, ctx, source.count(cfg, cfg.train_split))
    train_set, train_loader = source.train(cfg, ctx, train_transform, drop_last)
    val_set, val_loader = eval_data(cfg, ctx) if cfg.val_while_train else (None, None)
    if val_set is not None:
        check_same_classes(train_set, val_set)
    num_classes = cfg.num_classes or len(train_set.classes)
    mixer = build_mixer(cfg, num_classes, seed=cfg.seed + ctx.rank)
    return TrainData(train_set, val_set, train_loader, val_loader, mixer, num_classes, notes=[note] if note else [])
