"""Inference throughput: timm and onnxruntime baselines against our fast path.

Res2Net-50 (26w x 4s), batch 16, 224x224, all contenders in ONE process, measured in
interleaved rounds (one batch each per round, in a shuffled order) so that load from
other processes hits them all alike; medians of the per-round times and ratios to timm are reported, plus
the peak RSS of the process. Not a test: run it by hand on a quiet machine.

    python benchmarks/bench_inference.py --threads 2 --rounds 7

With ``--digits-checkpoint`` (a model trained by ``configs/demo/res2net50_digits.yaml``)
it instead measures int8 quality: top-1 agreement of the int8 path with fp32 on the
digits validation split, calibrated on training images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from res2net.benchmark import interleaved, peak_rss_mib
from res2net.benchmark.contenders import TIMM_CHANNELS_LAST, TIMM_NCHW, TIMM_ONNXRUNTIME, inference_contenders
from res2net.inference import PreprocessInfo, load_model, optimize_for_inference, preprocess_images

MODEL = "res2net50_26w_4s"
IMAGE_SIZE = 224


def _folder_images(split: Path, class_names: list[str]) -> tuple[list[Path], torch.Tensor]:
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        files = sorted((split / name).iterdir())
        paths += files
        labels += [index] * len(files)
    return paths, torch.tensor(labels)


def _load(paths: list[Path], info: PreprocessInfo) -> torch.Tensor:
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return preprocess_images(images, info)


def digits_agreement(checkpoint: Path, data_dir: Path, calibration_count: int) -> None:
    """int8 vs fp32 top-1 on the digits validation split (issue 5's int8 quality target)."""
    eager, info = load_model("res2net50", checkpoint_path=checkpoint)
    train_paths, _ = _folder_images(data_dir / "train", info.class_names)
    step = max(1, len(train_paths) // calibration_count)
    calibration = _load(train_paths[::step][:calibration_count], info)
    val_paths, labels = _folder_images(data_dir / "val", info.class_names)
    val = _load(val_paths, info)
    predictions = {}
    for precision in ("fp32", "int8"):
        model = optimize_for_inference(
            eager, precision, calibration_images=calibration, example_input_size=info.input_size
        )
        predictions[precision] = torch.cat([model(val[i : i + 64]) for i in range(0, len(val), 64)]).argmax(1)
    agree = float((predictions["int8"] == predictions["fp32"]).float().mean())
    top1 = {p: float((v == labels).float().mean()) for p, v in predictions.items()}
    print(f"digits val ({len(val)} images, {info.input_size[1]}x{info.input_size[2]}), int8 calibrated on "
          f"{calibration.shape[0]} train images: fp32 top-1 {top1['fp32']:.2%}, int8 top-1 {top1['int8']:.2%}, "
          f"int8/fp32 top-1 agreement {agree:.2%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--digits-checkpoint", type=Path, help="measure int8 agreement on digits instead")
    parser.add_argument("--digits-dir", type=Path, default=Path("data/digits"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.digits_checkpoint is not None:
        digits_agreement(args.digits_checkpoint, args.digits_dir, args.calibration_images)
        return 0
    calibration = torch.randn(args.calibration_images, 3, IMAGE_SIZE, IMAGE_SIZE)
    start = time.perf_counter()
    contenders = inference_contenders(MODEL, MODEL, args.batch_size, IMAGE_SIZE, calibration)
    print(f"setup (models, exports, int8 calibration): {time.perf_counter() - start:.0f} s", file=sys.stderr)

    outputs = {name: run() for name, run in contenders.items()}  # also the warm-up (oneDNN primitives, ORT arenas)
    reference = outputs[TIMM_NCHW]
    timings = {t.name: t.per_second for t in interleaved(contenders, rounds=args.rounds, items=args.batch_size,
                                                          warmup=0)}
    timm_nchw, timm_cl, ort_timm = timings[TIMM_NCHW], timings[TIMM_CHANNELS_LAST], timings[TIMM_ONNXRUNTIME]
    print(f"{MODEL}, batch {args.batch_size}, {IMAGE_SIZE}x{IMAGE_SIZE}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, median img/s")
    print(f"{'contender':38s} {'img/s':>7s} {'x timm NCHW':>11s} {'x timm CL':>9s} {'x ORT':>6s} {'max rel err':>11s}")
    for name, ips in timings.items():
        error = float((outputs[name] - reference).abs().max() / reference.abs().max())
        print(f"{name:38s} {ips:7.2f} {ips / timm_nchw:11.2f} {ips / timm_cl:9.2f} {ips / ort_timm:6.2f} {error:11.2e}")
    agree = float((outputs["ours int8 (optimize_for_inference)"].argmax(1) == reference.argmax(1)).float().mean())
    print(f"int8 top-1 agreement with fp32 on this (random-weight, random-input) batch: {agree:.2%}")
    print(f"peak RSS of the process: {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
