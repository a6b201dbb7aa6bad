"""CPU inference: our fast path against OpenVINO, onnxruntime and timm, at batch 1 and 16.

Res2Net-50 (26w x 4s), 224x224, every contender in ONE process, interleaved rounds (one batch
each per round, in a shuffled order), medians and the spread of the rounds; OpenVINO and
onnxruntime run timm's own ONNX export as their users would (OpenVINO: LATENCY hint, the
precision hint, NNCF's default int8 on the same 32 calibration images as ours). Also times the
first result per precision, in this process and in a second process that finds the caches.
Not a test: run it by hand on an idle machine.

    python benchmarks/bench_inference.py --threads 2 --rounds 9 [--json]

The full table has nine contenders whose thread pools disturb each other (onnxruntime's spin
after each run); the claims are the head-to-head table below it: for each precision and batch
size, ours and OpenVINO alone in one interleaved run of ``--head-to-head-rounds`` rounds.

With ``--digits-checkpoint`` (a model trained by ``configs/demo/res2net50_digits.yaml``) it
instead measures int8 quality: top-1 agreement with fp32 on the digits validation split,
calibrated on training images, and the logits' error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from res2net.inference import PreprocessInfo, load_model, optimize_for_inference, preprocess_images
from res2net.inference.calibration import sample_files
from res2net.speed import interleaved, peak_rss_mib
from res2net.speed.cli import inference_summary
from res2net.speed.contenders import OPENVINO, OURS, inference_contenders
from res2net.speed.results import add_record_argument, record_if_asked

MODEL = "res2net50_26w_4s"
IMAGE_SIZE = 224
FIRST_RESULT = """
import sys, time, torch
torch.set_num_threads({threads})
from res2net.inference import optimize_for_inference
from res2net.models import build_model
torch.manual_seed(0)  # the same weights in both processes: the second finds the first's caches
model = build_model("{model}").eval()
calibration = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(1))
start = time.perf_counter()
fast = optimize_for_inference(model, "{precision}", calibration_images=calibration)
ready = time.perf_counter()
fast(torch.randn(1, 3, 224, 224))
print(ready - start, time.perf_counter() - ready)
"""


def first_result_seconds(precision: str, threads: int, home: str) -> tuple[float, float]:
    """(optimize_for_inference, then the first batch-1 result) in a fresh process."""
    code = FIRST_RESULT.format(threads=threads, model=MODEL, precision=precision)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "RES2NET_HOME": home, "PYTHONWARNINGS": "ignore"})
    optimise, first = (float(v) for v in done.stdout.strip().splitlines()[-1].split())
    return optimise, first


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
    """int8 vs fp32 top-1 on the digits validation split, calibrated on training images."""
    eager, info = load_model("res2net50", checkpoint_path=checkpoint)
    train_paths, _ = _folder_images(data_dir / "train", info.class_names)
    # validate's rule: a seeded random sample of the train split (seed 42, the recipes' default)
    calibration = _load(sample_files(train_paths, calibration_count, seed=42), info)
    val_paths, labels = _folder_images(data_dir / "val", info.class_names)
    val = _load(val_paths, info)
    logits = {}
    for precision in ("fp32", "int8"):
        model = optimize_for_inference(eager, precision, calibration_images=calibration,
                                       example_input_size=info.input_size)
        logits[precision] = torch.cat([model(val[i : i + 64]) for i in range(0, len(val), 64)])
    agree = float((logits["int8"].argmax(1) == logits["fp32"].argmax(1)).float().mean())
    top1 = {p: float((v.argmax(1) == labels).float().mean()) for p, v in logits.items()}
    error = float((logits["int8"] - logits["fp32"]).abs().max() / logits["fp32"].abs().max())
    print(f"digits val ({len(val)} images, {info.input_size[1]}x{info.input_size[2]}), int8 calibrated on "
          f"{calibration.shape[0]} train images: fp32 top-1 {top1['fp32']:.2%}, int8 top-1 {top1['int8']:.2%}, "
          f"int8/fp32 top-1 agreement {agree:.2%}, max logit error {error:.2e} (relative to the largest logit)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--head-to-head-rounds", type=int, default=21)
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--digits-checkpoint", type=Path, help="measure int8 agreement on digits instead")
    parser.add_argument("--digits-dir", type=Path, default=Path("data/digits"))
    add_record_argument(parser, "inference")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.digits_checkpoint is not None:
        digits_agreement(args.digits_checkpoint, args.digits_dir, args.calibration_images)
        return 0
    results: dict[str, object] = {"model": MODEL, "threads": args.threads, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="res2net-home-") as home:
        first = {}
        for precision in ("fp32", "bf16", "int8"):
            cold = first_result_seconds(precision, args.threads, home)
            warm = first_result_seconds(precision, args.threads, home)  # the caches written by the cold run
            first[precision] = {"cold": [round(v, 2) for v in cold], "second_process": [round(v, 2) for v in warm]}
        results["first_result_seconds"] = first
    calibration = torch.randn(args.calibration_images, 3, IMAGE_SIZE, IMAGE_SIZE,
                              generator=torch.Generator().manual_seed(1))
    for batch in args.batch_sizes:
        contenders = inference_contenders(MODEL, MODEL, batch, IMAGE_SIZE, calibration)
        outputs = {name: run() for name, run in contenders.items()}  # warm-up
        reference = outputs["timm eager fp32 NCHW"]
        timings = interleaved(contenders, rounds=args.rounds, items=batch, warmup=0)
        summary = inference_summary(timings)
        summary["max_relative_error"] = {name: float((out - reference).abs().max() / reference.abs().max())
                                         for name, out in outputs.items()}
        results[f"batch_{batch}"] = summary
        if not args.json:
            print(f"{MODEL}, batch {batch}, {IMAGE_SIZE}x{IMAGE_SIZE}, {args.threads} threads, {args.rounds} "
                  "interleaved rounds")
            print(f"{'contender':44s} {'img/s':>8s} {'rounds img/s':>15s} {'vs OV fp32':>10s} {'max rel err':>11s}")
            for t in timings:
                spread = f"{batch / max(t.seconds):.1f}-{batch / min(t.seconds):.1f}"
                print(f"{t.name:44s} {t.per_second:8.2f} {spread:>15s} {summary['ratios'][t.name]:10.2f} "
                      f"{summary['max_relative_error'][t.name]:11.2e}")
            print("ours / OpenVINO: " + ", ".join(f"{p} {r:.2f}x" for p, r in summary["ours_over_openvino"].items()))
        head_to_head = {}
        for precision in ("fp32", "bf16", "int8"):
            pair = {name: contenders[name] for name in (OPENVINO.format(precision), OURS.format(precision))}
            rounds = interleaved(pair, rounds=args.head_to_head_rounds, items=batch)
            theirs, ours = rounds
            head_to_head[precision] = {
                "openvino_img_per_s": round(theirs.per_second, 2), "ours_img_per_s": round(ours.per_second, 2),
                "ratio": round(ours.per_second / theirs.per_second, 3),
                "ours_rounds_img_per_s": [round(batch / max(ours.seconds), 1), round(batch / min(ours.seconds), 1)],
                "openvino_rounds_img_per_s": [round(batch / max(theirs.seconds), 1),
                                              round(batch / min(theirs.seconds), 1)],
            }
            if not args.json:
                h = head_to_head[precision]
                print(f"head to head, batch {batch}, {precision}: ours {h['ours_img_per_s']} img/s (rounds "
                      f"{h['ours_rounds_img_per_s'][0]}-{h['ours_rounds_img_per_s'][1]}) vs OpenVINO "
                      f"{h['openvino_img_per_s']} ({h['openvino_rounds_img_per_s'][0]}-"
                      f"{h['openvino_rounds_img_per_s'][1]}): {h['ratio']:.3f}x")
        summary["head_to_head"] = head_to_head
    results["peak_rss_mib"] = round(peak_rss_mib())
    record_if_asked(args, results)
    if args.json:
        print(json.dumps(results))
    else:
        for precision, times in results["first_result_seconds"].items():  # type: ignore[union-attr]
            print(f"first result {precision}: optimize {times['cold'][0]:.1f} s + first call {times['cold'][1]:.1f} s; "
                  f"second process {times['second_process'][0]:.1f} s + {times['second_process'][1]:.1f} s")
        print(f"peak RSS of the process: {results['peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
