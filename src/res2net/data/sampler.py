"""Samplers whose order is a pure function of (seed, epoch), resumable at any batch.

Exact resume after a crash (the same weights as an uninterrupted run) needs three things from
the input pipeline: the same sample order, the same augmentation of each sample, and a way to
start in the middle of an epoch. :class:`TrainSampler` derives the whole epoch's order from
``(seed, epoch)`` alone, attaches to every position a per-sample seed (which the dataset uses to
seed the augmentation), and ``set_epoch(epoch, start_batch=k)`` drops exactly the first ``k``
batches of this rank's share. Nothing depends on worker count or on what ran before.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

_SEED_BOUND = 2**62


def derive_seed(*parts: int) -> int:
    """A well-mixed 62-bit seed from integers (for example a run seed and an epoch number)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _SEED_BOUND


def sample_positions(total: int, count: int, seed: int) -> list[int]:
    """``count`` of ``range(total)`` drawn without replacement by a seeded generator, in order
    (all of them when ``count >= total``)."""
    if count >= total:
        return list(range(total))
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]
    return sorted(chosen.tolist())


class TrainSampler(Sampler[tuple[int, int]]):
    """Training order for one rank, yielding ``(dataset index, augmentation seed)`` pairs.

    Every rank builds the same global order for the epoch (a seeded permutation, or file order
    when ``shuffle`` is false), padded by wrapping around to a multiple of ``num_replicas``, and
    takes every ``num_replicas``-th position starting at ``rank`` (as DistributedSampler does).

    ``aug_repeats > 1`` turns on repeated augmentation (MindCV/timm's RepeatAugSampler): each
    index appears ``aug_repeats`` times in a row in the global order, so its copies land on
    different ranks with different seeds, and each rank still yields ``ceil(n / num_replicas)``
    samples per epoch. ``aug_repeats`` of 0 or 1 means off, as in MindCV.
    """

    def __init__(
        self,
        dataset_len: int,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        aug_repeats: int = 0,
    ) -> None:
        if dataset_len <= 0:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        if batch_size <= 0 or aug_repeats < 0:
            raise ValueError(f"batch_size must be positive and aug_repeats >= 0, got {batch_size}, {aug_repeats}")
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.aug_repeats = aug_repeats
        self.epoch = 0
        self.start_batch = 0
        self.epoch_length = math.ceil(dataset_len / num_replicas)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate next and how many of its batches to skip (for resume)."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_order(self, epoch: int) -> list[tuple[int, int]]:
        """This rank's full list of ``(index, seed)`` for ``epoch``, before any skipping."""
        n = self.dataset_len
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        repeats = self.aug_repeats if self.aug_repeats > 1 else 1
        if repeats > 1:
            order = order.repeat_interleave(repeats)
        total = math.ceil(len(order) / self.num_replicas) * self.num_replicas
        if total > len(order):
            order = torch.cat([order, order[: total - len(order)]])
        seeds = torch.randint(
            0, _SEED_BOUND, (total,), generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1))
        )
        mine = slice(self.rank, total, self.num_replicas)
        pairs = list(zip(order[mine].tolist(), seeds[mine].tolist(), strict=True))
        return pairs[: self.epoch_length]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.epoch_order(self.epoch)[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(0, self.epoch_length - self.start_batch * self.batch_size)


class EvalShardSampler(Sampler[int]):
    """Indices ``rank, rank + R, rank + 2R, ...``: disjoint shards that cover the dataset once.

    Unlike DistributedSampler nothing is padded, so no image is counted twice; ranks may get
    one sample more or less than each other, which is why evaluation sums correct counts and
    totals over ranks once at the end instead of averaging per-batch results.
    """

    def __init__(self, dataset_len: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.dataset_len = dataset_len
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_len, self.num_replicas))
