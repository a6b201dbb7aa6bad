"""DataLoader construction for training and (distributed) evaluation.

Plain keyword arguments on purpose: the training engine maps recipe keys onto them
(``batch_size``, ``shuffle``, ``drop_remainder`` -> ``drop_last``, ``num_parallel_workers`` ->
``num_workers``, ``aug_repeats``), so this package does not depend on the config schema.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from res2net.data.folder import collate_skipping
from res2net.data.sampler import EvalShardSampler, TrainSampler
from res2net.data.shards import ShardStream


def world(distributed: bool, num_replicas: int | None = None, rank: int | None = None) -> tuple[int, int]:
    """(num_replicas, rank): explicit values win, then the initialised process group, else (1, 0)."""
    if num_replicas is not None and rank is not None:
        return num_replicas, rank
    if distributed and dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    num_workers: int,
    distributed: bool,
    seed: int,
    aug_repeats: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> DataLoader:
    """Training loader over a :class:`TrainSampler` (this rank's share, seeded per epoch).

    Call :func:`set_epoch` before iterating each epoch (``start_batch`` to resume mid-epoch).
    Batches are ``(images, targets)``, smaller when unreadable images were dropped, or ``None``
    when all of a batch's images were unreadable.
    """
    replicas, this_rank = world(distributed, num_replicas, rank)
    sampler = TrainSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        num_replicas=replicas,
        rank=this_rank,
        aug_repeats=aug_repeats,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate_skipping,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        # Workers' base seeds come from this generator, not from torch's global one, so starting
        # an epoch never consumes the training process's random stream (exact resume relies on it).
        generator=torch.Generator().manual_seed(seed),
    )


def build_eval_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    distributed: bool,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> DataLoader:
    """Evaluation loader: in order, each rank a disjoint shard, nothing padded or dropped."""
    replicas, this_rank = world(distributed, num_replicas, rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EvalShardSampler(len(dataset), num_replicas=replicas, rank=this_rank),  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=collate_skipping,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
    )


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Point a training loader at ``epoch``, skipping its first ``start_batch`` batches (folders)."""
    if isinstance(loader.dataset, ShardStream):
        if start_batch:
            raise ValueError("shard streams restart epochs from their beginning")
        loader.dataset.set_epoch(epoch)
        return
    sampler = loader.sampler
    if not isinstance(sampler, TrainSampler):
        raise TypeError("set_epoch needs a loader made by build_loader")
    sampler.set_epoch(epoch, start_batch)
