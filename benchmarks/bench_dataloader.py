"""Decode + train-augment throughput per worker: res2net.data against timm, same files, same settings.

Writes ~200 ImageNet-sized (500x375 and 375x500) photo-like JPEGs (smooth gradients, noise and
filled shapes, seeded) to a temporary folder, then times, in one process with one thread (what
one DataLoader worker gets), a full pass over the folder through

* ours: ``ImageFolderDataset`` + ``build_train_transform`` (fast decode+crop, fused jitter/normalise)
* the same, batched: our folder loader (sampler, per-sample seeds, collation) against the same
  JPEGs as webdataset shards (``res2net make-shards``) through ``ShardStream`` (tar reading,
  shuffle buffer, collation)
* timm: ``timm.data.ImageDataset`` + ``timm.data.create_transform(224, is_training=True, ...)``

with the MindCV Res2Net recipe's augmentation (RandomResizedCrop 0.08-1, ratio 3/4-4/3, bilinear,
hflip 0.5, colour jitter 0.4, random erasing 0.5). Rounds alternate between the two; medians and
their ratio, and the median of the per-round ratios (robust to the machine's speed drifting
between rounds), are printed. Then, on the same files, what the pipeline is made of: ms per JPEG
for our decoder (simplejpeg) against torchvision's and Pillow's (asserting they give the same
pixels), ms per JPEG at each of libjpeg-turbo's DCT scales (1/8 to 8/8), ms per JPEG to get the
recipe's crop boxes by decoding the whole image or only the box, us per crop resized
from a strided view against an interleaved copy, and ms per image in each step of our train
transform.

    python benchmarks/bench_dataloader.py [--images 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image, ImageDraw
from torchvision.io import decode_jpeg
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from res2net.data import ImageFolderDataset, build_loader, build_train_transform, jpeg_region
from res2net.data.decode import EncodedImage, decode_rgb
from res2net.data.shards import ShardIndex, ShardStream, write_shards
from res2net.data.transforms import RandomResizedCropDecode, interleaved
from res2net.speed import interleaved as interleaved_timings
from res2net.speed.results import add_record_argument, record_if_asked

# torchvision's decoder, timed here as the alternative ours was chosen over, warns on every call.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)

RECIPE = dict(
    scale=(0.08, 1.0), ratio=(0.75, 1.333), interpolation="bilinear", hflip=0.5, color_jitter=0.4, re_prob=0.5
)


def write_photos(root: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs in 10 class folders; sizes and content like typical ImageNet photos."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        width, height = (500, 375) if k % 4 else (375, 500)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        colours = rng.uniform(0, 255, (3, 3))
        waves = rng.uniform(1, 6, 3)
        planes = [
            c[0] * 0.5 + c[1] * x / width * 0.5 + (c[2] - 128) * np.sin(y / height * w) for c, w in zip(colours, waves)
        ]
        pixels = np.stack(planes, -1) + rng.normal(0, 10, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            cx, cy, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(10, 120))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
            else:
                draw.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=fill)
        folder = root / "train" / f"class{k % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{k:04d}.jpg", quality=90)


def images_per_second(dataset, seeded: bool) -> float:
    """One pass; ``seeded`` fetches by (index, seed) as our training sampler does (per-sample RNG seeding)."""
    start = time.perf_counter()
    for i in range(len(dataset)):
        image, _ = dataset[(i, i)] if seeded else dataset[i]
        assert image.shape == (3, 224, 224)
    return len(dataset) / (time.perf_counter() - start)


def batches_per_second(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """One pass over batches produced in this process (what one DataLoader worker does,
    collation included)."""
    start = time.perf_counter()
    count = 0
    for images, _ in batches:
        assert images.shape[1:] == (3, 224, 224)
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def _ms_per_item(passes: dict[str, Callable[[], object]], count: int, rounds: int) -> dict[str, float]:
    """Median ms per item of each pass over ``count`` items, the passes interleaved round by round."""
    return {t.name: t.median / count * 1e3 for t in interleaved_timings(passes, rounds=rounds, items=count)}


def decoder_ms(files: list[bytes], rounds: int) -> dict[str, float]:
    """ms per JPEG for our decoder (simplejpeg) and the two it was chosen over, which must give its pixels."""
    ours = [decode_rgb(EncodedImage(Path("x.jpg"), data))[0] for data in files[:8]]
    for data, pixels in zip(files, ours):
        assert torch.equal(pixels, decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)))
        pillow = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        assert torch.equal(pixels, torch.from_numpy(pillow).permute(2, 0, 1))
    decoders: dict[str, Callable[[bytes], object]] = {
        "simplejpeg (ours)": lambda data: decode_rgb(EncodedImage(Path("x.jpg"), data)),
        "torchvision": lambda data: decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)),
        "Pillow": lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
    }
    passes = {name: (lambda d=decode: [d(data) for data in files]) for name, decode in decoders.items()}
    return _ms_per_item(passes, len(files), rounds)


def decode_scale_ms(files: list[bytes], rounds: int) -> dict[str, float]:
    """ms per JPEG decoded at each of libjpeg-turbo's DCT scales M/8 (simplejpeg picks the smallest
    scale that keeps the minimum size asked for): why the pipeline uses only 1/2, 1/4 and 1/8."""
    frames = [EncodedImage(Path("x.jpg"), data).jpeg_frame for data in files]
    passes = {}
    for eighths in (8, 7, 6, 5, 4, 3, 2, 1):
        wanted = [(-(-frame.height * eighths // 8), -(-frame.width * eighths // 8)) for frame in frames]
        passes[f"{eighths}/8"] = lambda wanted=wanted: [
            simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=h, min_width=w)
            for data, (h, w) in zip(files, wanted)
        ]
        decoded = passes[f"{eighths}/8"]()
        assert [image.shape[:2] for image in decoded] == wanted, f"simplejpeg did not decode at {eighths}/8"
    return _ms_per_item(passes, len(files), rounds)


def region_decode_ms(files: list[bytes], rounds: int) -> dict[str, float]:
    """ms per JPEG to get the recipe's random-resized crop boxes: the whole image decoded and sliced,
    or only the box decoded (libjpeg-turbo 3's cropping region, ``res2net.data.jpeg_region``)."""
    if not jpeg_region.available():
        return {}
    crop = RandomResizedCropDecode(224, scale=RECIPE["scale"], ratio=RECIPE["ratio"],
                                   interpolation=InterpolationMode.BILINEAR)
    boxes = []
    for data in files:
        frame = EncodedImage(Path("x.jpg"), data).jpeg_frame
        boxes.append(crop.box(frame.width, frame.height))
    passes = {
        "whole + slice": lambda: [decode_rgb(EncodedImage(Path("x.jpg"), data))[0][:, t : t + h, x : x + w]
                                  for data, (t, x, h, w) in zip(files, boxes)],
        "region (ours)": lambda: [jpeg_region.decode_region(data, box) for data, box in zip(files, boxes)],
    }
    return _ms_per_item(passes, len(files), rounds)


def resize_input_us(files: list[bytes], rounds: int) -> dict[str, float]:
    """us per crop resized to 224: the crop as a strided view of the decoded image, or copied interleaved first."""
    crop = RandomResizedCropDecode(224, scale=RECIPE["scale"], ratio=RECIPE["ratio"],
                                   interpolation=InterpolationMode.BILINEAR)
    crops = []
    for data in files:
        pixels, _ = decode_rgb(EncodedImage(Path("x.jpg"), data))
        top, left, h, w = crop.box(pixels.shape[2], pixels.shape[1])
        crops.append(pixels[:, top : top + h, left : left + w])
    ways = {"strided view": lambda c: c, "interleaved copy (ours)": interleaved}
    passes = {name: (lambda w=way: [F.resize(w(c), [224, 224], antialias=True) for c in crops])
              for name, way in ways.items()}
    return {name: 1e3 * ms for name, ms in _ms_per_item(passes, len(crops), rounds).items()}


def stage_ms(dataset: ImageFolderDataset, rounds: int) -> dict[str, float]:
    """ms per image spent in each step of our train transform (the first step decodes, crops and resizes)."""
    steps = dataset.transform.transforms
    totals = {type(step).__name__: [] for step in steps}
    for _ in range(rounds):
        spent = dict.fromkeys(totals, 0.0)
        for i in range(len(dataset)):
            value = EncodedImage.read(dataset.samples[i][0])
            torch.manual_seed(i)
            for step in steps:
                start = time.perf_counter()
                value = step(value)
                spent[type(step).__name__] += time.perf_counter() - start
        for name, seconds in spent.items():
            totals[name].append(seconds / len(dataset) * 1e3)
    return {name: statistics.median(values) for name, values in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    add_record_argument(parser, "dataloader")
    args = parser.parse_args()

    import timm
    import timm.data

    torch.set_num_threads(1)  # a DataLoader worker runs with one thread
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_photos(root, args.images)
        ours = ImageFolderDataset(root, "train", transform=build_train_transform(image_size=224, **RECIPE))
        timm_transform = timm.data.create_transform(224, is_training=True, **RECIPE)
        theirs = timm.data.ImageDataset(str(root / "train"), transform=timm_transform)
        assert len(ours) == len(theirs) == args.images
        write_shards(root, root / "shards", shard_size=50, splits=("train",))
        stream = ShardStream(ShardIndex.read(str(root / "shards")), "train", batch_size=20, training=True,
                             transform=build_train_transform(image_size=224, **RECIPE))
        folder_loader = build_loader(ours, batch_size=20, shuffle=True, drop_last=True, num_workers=0,
                                     distributed=False, seed=0)
        images_per_second(ours, True), images_per_second(theirs, False)  # warm-up: page cache, lazy imports
        batches_per_second(stream), batches_per_second(folder_loader)
        rates: dict[str, list[float]] = {"res2net.data": [], "timm": [], "folder batches": [], "shard batches": []}
        for _ in range(args.rounds):
            rates["res2net.data"].append(images_per_second(ours, True))
            rates["timm"].append(images_per_second(theirs, False))
            rates["folder batches"].append(batches_per_second(folder_loader))
            rates["shard batches"].append(batches_per_second(stream))
        files = [path.read_bytes() for path, _ in ours.samples]
        decoders = decoder_ms(files, args.rounds)
        scales = decode_scale_ms(files, args.rounds)
        regions = region_decode_ms(files, args.rounds)
        resize = resize_input_us(files, args.rounds)
        stages = stage_ms(ours, args.rounds)

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, timm {timm.__version__}")
    print(f"{args.images} JPEGs 500x375, train transform to 224, 1 thread, {args.rounds} interleaved rounds")
    print(f"{'pipeline':<16}{'median img/s':>14}{'min':>10}{'max':>10}")
    for name, values in rates.items():
        print(f"{name:<16}{statistics.median(values):>14.1f}{min(values):>10.1f}{max(values):>10.1f}")
    ratio = statistics.median(rates["res2net.data"]) / statistics.median(rates["timm"])
    print(f"ratio (ours / timm, medians): {ratio:.2f}x")
    # The machine's speed drifts between rounds; a ratio taken within each round cancels the drift.
    per_round = sorted(ours / theirs for ours, theirs in zip(rates["res2net.data"], rates["timm"]))
    print(f"ratio (ours / timm, median of per-round ratios): {statistics.median(per_round):.2f}x "
          f"(rounds {per_round[0]:.2f}-{per_round[-1]:.2f}x)")
    shard_ratio = statistics.median(rates["shard batches"]) / statistics.median(rates["folder batches"])
    print(f"ratio (shard batches / folder batches, both collated by one worker, medians): {shard_ratio:.2f}x")
    print("decoders, ms per JPEG (same pixels):",
          ", ".join(f"{name} {ms:.3f}" for name, ms in decoders.items()))
    print("simplejpeg at each DCT scale, ms per JPEG:", ", ".join(f"{name} {ms:.3f}" for name, ms in scales.items()))
    print("crop boxes, ms per JPEG:", ", ".join(f"{name} {ms:.3f}" for name, ms in regions.items())
          if regions else "crop boxes: no libturbojpeg 3 (the fastjpeg extra), whole images are decoded")
    print("resize input, us per crop to 224:", ", ".join(f"{name} {us:.0f}" for name, us in resize.items()))
    print("our train transform, ms per image by step:", ", ".join(f"{name} {ms:.3f}" for name, ms in stages.items()))
    record_if_asked(args, {"img_per_s_median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
                           "ours_over_timm": round(ratio, 3), "ours_over_timm_per_round": round(
                               statistics.median(per_round), 3), "shards_over_folders": round(shard_ratio, 3),
                           "decoder_ms": decoders, "dct_scale_ms": scales, "crop_ms": regions,
                           "resize_us": resize, "transform_step_ms": stages})


if __name__ == "__main__":
    main()
