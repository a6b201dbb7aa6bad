"""WebDataset tar shards: written from ImageNet-style folders, read back with an exact plan.

Large runs outgrow a folder of a million small files; webdataset's tar shards (read
sequentially, from local disk or through ``pipe:`` / ``http(s)://`` URLs that webdataset opens)
are what timm and most cluster pipelines read. ``write_shards`` turns ``<data_dir>/<split>/<class>/``
into ``<split>-%06d.tar`` plus ``index.json`` (class names, the samples of every shard).

Reading does not split shards between processes the usual way (whole shards per rank and
worker, which gives ranks different sample counts and DDP uneven steps). With the index, every
epoch has a plan: the shard order is a seeded permutation of ``(seed, epoch)``, the samples
follow in stored order (``write_shards`` stores them shuffled), the sequence is padded by wrapping
to a multiple of the world size (as DistributedSampler and our folder sampler do), and each
rank takes one contiguous range: every sample once per epoch, the same number per rank.
A rank's batches go to its DataLoader workers in contiguous runs; a worker reads only the
shards its run touches, skipping (without decoding) the samples before its start, and mixes
them through a seeded shuffle buffer. Augmentation is seeded per position in the plan.
Everything is a function of (seed, epoch, world size, workers), so a run resumed from a
checkpoint with the same world size and worker count replays its epoch exactly.

Validation is planned in index order without padding (ranks may differ by one sample;
evaluation sums counts). A sample whose image does not decode is skipped with a warning
naming the shard and key and counted, as a bad file is for folders.
"""

from __future__ import annotations

import json
import math
import random
import tarfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from res2net.data.decode import EncodedImage, ImageDecodeError
from res2net.data.folder import CorruptImageWarning, ImageFolderDataset, SkipCounter, collate_skipping
from res2net.data.sampler import derive_seed
from res2net.errors import DataError
from res2net.progress import progress

INDEX_NAME = "index.json"
INDEX_FORMAT = "res2net-shards"
INDEX_VERSION = 1
SHUFFLE_BUFFER = 1000
_IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff", "gif")

Sample = tuple[torch.Tensor, int]


def _webdataset() -> Any:
    try:
        import webdataset
    except ImportError:
        raise DataError("dataset: webdataset needs the webdataset package: pip install 'res2net[shards]'") from None
    return webdataset


@dataclass(frozen=True)
class ShardIndex:
    """Where a split's shards are, how many samples each holds, and the class names."""

    location: str  # folder or URL prefix the shard names are relative to
    classes: tuple[str, ...]
    splits: dict[str, tuple[tuple[str, int], ...]]

    def shards(self, split: str) -> tuple[tuple[str, int], ...]:
        if split not in self.splits:
            raise DataError(f"{self.location} has no '{split}' shards (splits: {', '.join(sorted(self.splits))})")
        return self.splits[split]

    def url(self, shard: str) -> str:
        return f"{self.location.rstrip('/')}/{shard}"

    def num_samples(self, split: str) -> int:
        return sum(count for _, count in self.shards(split))

    @classmethod
    def read(cls, data_dir: str) -> ShardIndex:
        """The index of a shard folder (``data_dir/index.json``) or of a brace pattern or URL
        (``.../train-{000000..000146}.tar``: the index beside the shards)."""
        location = data_dir.rsplit("/", 1)[0] if "{" in data_dir or data_dir.endswith(".tar") else data_dir
        url = f"{location.rstrip('/')}/{INDEX_NAME}"
        try:
            with _webdataset().gopen(url, "rb") as handle:
                index = json.loads(handle.read().decode("utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(
                f"cannot read the shard index {url} ({err}); write shards with `res2net make-shards`"
            ) from None
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            raise DataError(f"{url} is not a res2net shard index")
        if index.get("version", 0) > INDEX_VERSION:
            raise DataError(f"{url} was written by a newer res2net (index version {index['version']})")
        splits = {
            name: tuple((shard["name"], int(shard["samples"])) for shard in shards)
            for name, shards in index["splits"].items()
        }
        return cls(location=location, classes=tuple(index["classes"]), splits=splits)


def write_shards(
    data_dir: str | Path, out_dir: str | Path, *, shard_size: int = 1000, seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
) -> ShardIndex:
    """Write each split of an ImageNet-style folder as tar shards of ``shard_size`` samples.

    Training samples are stored in a seeded random order (classes mixed inside every shard, so
    a shard-level shuffle plus a small buffer mixes well); validation keeps file order. Image
    bytes are stored as they are (no re-encoding). Splits that do not exist are skipped.
    """
    wds = _webdataset()
    if shard_size < 1:
        raise DataError(f"--shard_size must be at least 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes: tuple[str, ...] | None = None
    written: dict[str, list[dict[str, Any]]] = {}
    for split in splits:
        if not (Path(data_dir) / split).is_dir():
            continue
        folder = ImageFolderDataset(data_dir, split)
        if classes is not None and tuple(folder.classes) != classes:
            raise DataError(f"class folders of {folder.root} differ from the other splits'")
        classes = tuple(folder.classes)
        order = list(range(len(folder.samples)))
        if split == "train":
            random.Random(seed).shuffle(order)
        shards: list[dict[str, Any]] = []
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for position, index in enumerate(progress(order, description=f"shards of {split}", unit="img")):
                path, label = folder.samples[index]
                if position % shard_size == 0:
                    shards.append({"name": f"{split}-{len(shards):06d}.tar", "samples": 0})
                field = path.suffix.lower().lstrip(".")
                field = "jpg" if field == "jpeg" else field
                sink.write({
                    "__key__": f"{split}_{position:08d}",
                    field: path.read_bytes(),
                    "cls": str(label).encode(),
                    "json": json.dumps({"file": f"{path.parent.name}/{path.name}"}).encode(),
                })
                shards[-1]["samples"] += 1
        written[split] = shards
    if classes is None:
        raise DataError(f"no {' or '.join(splits)} folder in {data_dir}")
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "classes": list(classes), "splits": written}
    tmp = out / f".{INDEX_NAME}.tmp"
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    tmp.replace(out / INDEX_NAME)
    return ShardIndex.read(str(out))


def epoch_plan(
    counts: Sequence[int], *, epoch: int, seed: int, shuffle: bool, num_replicas: int, rank: int, pad: bool
) -> list[tuple[int, int, int]]:
    """This rank's ``(shard, sample in shard, position in the epoch)`` triples, in reading order."""
    shard_order = list(range(len(counts)))
    if shuffle:
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch, 2))
        shard_order = torch.randperm(len(counts), generator=generator).tolist()
    sequence = [(shard, i) for shard in shard_order for i in range(counts[shard])]
    total = len(sequence)
    if pad:
        per_rank = math.ceil(total / num_replicas)
        padded = sequence + sequence[: per_rank * num_replicas - total]
        start = rank * per_rank
        chosen = range(start, start + per_rank)
        return [(padded[p][0], padded[p][1], p) for p in chosen]
    base, extra = divmod(total, num_replicas)
    start = rank * base + min(rank, extra)
    chosen = range(start, start + base + (1 if rank < extra else 0))
    return [(sequence[p][0], sequence[p][1], p) for p in chosen]


class ShardStream(IterableDataset[Any]):
    """One split of a shard set, as batches for this rank (``len`` = batches per epoch).

    Items are ``(images, targets)`` batches collated like the folder loader's (None when every
    image of a batch was unreadable); use it with ``DataLoader(batch_size=None)``.
    """

    def __init__(
        self,
        index: ShardIndex,
        split: str,
        *,
        transform: Callable[[EncodedImage], torch.Tensor],
        batch_size: int,
        training: bool,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ) -> None:
        self.index = index
        self.split = split
        self.shards = index.shards(split)
        self.classes = list(index.classes)
        self.transform = transform
        self.batch_size = batch_size
        self.training = training
        self.shuffle = shuffle and training
        self.drop_last = drop_last and training
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle_buffer = shuffle_buffer if self.shuffle else 0
        self.epoch = 0
        self.skipped = SkipCounter()
        self.root = Path(index.location)

    @property
    def num_samples(self) -> int:
        return self.index.num_samples(self.split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self) -> list[tuple[int, int, int]]:
        return epoch_plan([count for _, count in self.shards], epoch=self.epoch, seed=self.seed, shuffle=self.shuffle,
                          num_replicas=self.num_replicas, rank=self.rank, pad=self.training)

    def _batches(self, samples: int) -> int:
        return samples // self.batch_size if self.drop_last else math.ceil(samples / self.batch_size)

    def __len__(self) -> int:
        return self._batches(len(self.plan()))

    def worker_plan(self, worker: int, workers: int) -> list[tuple[int, int, int]]:
        """The contiguous run of this rank's plan (whole batches) that ``worker`` reads."""
        plan = self.plan()
        batches = self._batches(len(plan))
        base, extra = divmod(batches, workers)
        first = worker * base + min(worker, extra)
        count = base + (1 if worker < extra else 0)
        return plan[first * self.batch_size : min(len(plan), (first + count) * self.batch_size)]

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.worker_plan(worker, workers)
        rng = random.Random(derive_seed(self.seed, self.epoch, 3, self.rank, worker))
        batch: list[Sample | None] = []
        for item in self._shuffled(self._read(mine), rng):
            batch.append(self._decode(*item))
            if len(batch) == self.batch_size:
                yield collate_skipping(batch)
                batch = []
        if batch and not self.drop_last:
            yield collate_skipping(batch)

    def _shuffled(self, items: Iterator[Any], rng: random.Random) -> Iterator[Any]:
        if self.shuffle_buffer <= 1:
            yield from items
            return
        buffer: list[Any] = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def _read(self, plan: list[tuple[int, int, int]]) -> Iterator[tuple[str, dict[str, Any], int]]:
        """Raw samples of ``plan`` in its order: consecutive entries of one shard are read in one pass."""
        start = 0
        while start < len(plan):
            shard = plan[start][0]
            end = start
            while end < len(plan) and plan[end][0] == shard and plan[end][1] == plan[start][1] + (end - start):
                end += 1
            first, wanted = plan[start][1], {plan[i][1]: plan[i][2] for i in range(start, end)}
            name = self.shards[shard][0]
            for offset, sample in self._shard_samples(name, stop=first + (end - start)):
                if offset in wanted:
                    yield name, sample, wanted[offset]
            start = end

    def _shard_samples(self, name: str, *, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
        wds = _webdataset()
        from webdataset.tariterators import group_by_keys, tar_file_iterator

        url = self.index.url(name)
        key = "(start of shard)"
        try:
            with wds.gopen(url, "rb") as stream:
                files = ({**member, "__url__": url} for member in tar_file_iterator(stream))
                for offset, sample in enumerate(group_by_keys(files)):
                    if offset >= stop:
                        return
                    key = sample.get("__key__", key)
                    yield offset, sample
        except (tarfile.TarError, OSError, EOFError, ValueError) as err:  # a damaged or truncated shard
            warnings.warn(f"shard {url} is unreadable after key {key} ({err}); its remaining samples are skipped",
                          CorruptImageWarning, stacklevel=2)
            self.skipped.increment()

    def _decode(self, shard: str, sample: dict[str, Any], position: int) -> Sample | None:
        key = sample.get("__key__", "?")
        field = next((f for f in _IMAGE_FIELDS if f in sample), None)
        try:
            if field is None or "cls" not in sample:
                raise ImageDecodeError("no image or no cls field")
            label = int(sample["cls"])
            encoded = EncodedImage(Path(f"{shard}/{key}.{field}"), sample[field])
            state = torch.get_rng_state()
            torch.default_generator.manual_seed(derive_seed(self.seed, self.epoch, 4, position))
            try:
                return self.transform(encoded), label
            finally:
                torch.set_rng_state(state)
        except (ImageDecodeError, ValueError) as err:
            warnings.warn(f"skipping unreadable sample {key} in shard {shard}: {err}", CorruptImageWarning,
                          stacklevel=2)
            self.skipped.increment()
            return None

    def encoded_samples(self, positions: Sequence[int]) -> list[EncodedImage]:
        """The stored images at these positions of the split (index order), for int8 calibration."""
        wanted = set(positions)
        out: list[EncodedImage] = []
        position = 0
        for name, count in self.shards:
            if not wanted & set(range(position, position + count)):
                position += count
                continue
            for offset, sample in self._shard_samples(name, stop=count):
                if position + offset in wanted:
                    field = next((f for f in _IMAGE_FIELDS if f in sample), None)
                    if field is not None:
                        out.append(EncodedImage(Path(f"{name}/{sample['__key__']}.{field}"), sample[field]))
            position += count
        return out


def run_make_shards(args: Any) -> int:
    index = write_shards(args.data_dir, args.out_dir, shard_size=args.shard_size, seed=args.seed)
    counts = ", ".join(f"{split}: {index.num_samples(split)} samples in {len(shards)} shards"
                       for split, shards in index.splits.items())
    print(f"wrote {args.out_dir}: {counts}, {len(index.classes)} classes")
    return 0
