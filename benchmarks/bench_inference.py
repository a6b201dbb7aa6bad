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
import copy
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from res2net.inference import (
    PreprocessInfo,
    load_inference_model,
    optimize_for_inference,
    preprocess_for,
    preprocess_images,
)
from res2net.inference.onnx_runtime import make_session, onnx_bytes
from res2net.models import build_model

MODEL = "res2net50_26w_4s"
INPUT = (3, 224, 224)


def _randomize_batchnorm(model: nn.Module) -> None:
    """Trained-like BatchNorm statistics: identity ones would hide folding costs/benefits."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)


def _contenders(batch: torch.Tensor, calibration: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    import timm

    timm_model = timm.create_model(MODEL, pretrained=False).eval()
    _randomize_batchnorm(timm_model)
    timm_cl = copy.deepcopy(timm_model).to(memory_format=torch.channels_last)
    ours = build_model(MODEL)
    ours.load_state_dict(timm_model.state_dict())  # same weights: outputs are comparable
    ours.eval()
    # onnxruntime on timm's own (unfolded) export, as a user would run it.
    timm_session = make_session(onnx_bytes(timm_model, INPUT))
    fast = {p: optimize_for_inference(ours, p, calibration_images=calibration) for p in ("fp32", "bf16", "int8")}
    batch_cl = batch.contiguous(memory_format=torch.channels_last)
    array = batch.numpy()

    def timm_nchw() -> torch.Tensor:
        with torch.inference_mode():
            return timm_model(batch)

    def timm_channels_last() -> torch.Tensor:
        with torch.inference_mode():
            return timm_cl(batch_cl)

    def timm_onnxruntime() -> torch.Tensor:
        return torch.from_numpy(timm_session.run(None, {"input": array})[0])

    return {
        "timm eager fp32 NCHW": timm_nchw,
        "timm eager fp32 channels_last": timm_channels_last,
        "onnxruntime, timm's ONNX export": timm_onnxruntime,
        "ours fp32 (optimize_for_inference)": lambda: fast["fp32"](batch),
        "ours bf16 (optimize_for_inference)": lambda: fast["bf16"](batch),
        "ours int8 (optimize_for_inference)": lambda: fast["int8"](batch),
    }


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    info = preprocess_for("res2net50", checkpoint)
    train_paths, _ = _folder_images(data_dir / "train", info.class_names)
    step = max(1, len(train_paths) // calibration_count)
    calibration = _load(train_paths[::step][:calibration_count], info)
    val_paths, labels = _folder_images(data_dir / "val", info.class_names)
    val = _load(val_paths, info)
    predictions = {}
    for precision in ("fp32", "int8"):
        model, _ = load_inference_model(
            "res2net50", checkpoint_path=checkpoint, precision=precision, calibration_images=calibration
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
    torch.manual_seed(0)
    batch = torch.randn(args.batch_size, *INPUT)
    calibration = torch.randn(args.calibration_images, *INPUT)
    start = time.perf_counter()
    contenders = _contenders(batch, calibration)
    print(f"setup (models, exports, int8 calibration): {time.perf_counter() - start:.0f} s", file=sys.stderr)

    outputs = {name: run() for name, run in contenders.items()}  # warm-up (oneDNN primitives, ORT arenas)
    reference = outputs["timm eager fp32 NCHW"]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    shuffler = random.Random(0)
    for round_index in range(args.rounds):
        # A new order each round: a contender must not always follow the same one (an
        # onnxruntime or OpenMP pool still spinning after its run slows the next one).
        shuffler.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t0)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    base = {k: args.batch_size / statistics.median(times[k]) for k in times}
    timm_nchw = base["timm eager fp32 NCHW"]
    timm_cl = base["timm eager fp32 channels_last"]
    ort_timm = base["onnxruntime, timm's ONNX export"]
    print(f"{MODEL}, batch {args.batch_size}, {INPUT[1]}x{INPUT[2]}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, median img/s")
    print(f"{'contender':38s} {'img/s':>7s} {'x timm NCHW':>11s} {'x timm CL':>9s} {'x ORT':>6s} {'max rel err':>11s}")
    for name, ips in base.items():
        error = float((outputs[name] - reference).abs().max() / reference.abs().max())
        print(f"{name:38s} {ips:7.2f} {ips / timm_nchw:11.2f} {ips / timm_cl:9.2f} {ips / ort_timm:6.2f} {error:11.2e}")
    agree = float((outputs["ours int8 (optimize_for_inference)"].argmax(1) == reference.argmax(1)).float().mean())
    print(f"int8 top-1 agreement with fp32 on this (random-weight, random-input) batch: {agree:.2%}")
    print(f"peak RSS of the process: {_peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
