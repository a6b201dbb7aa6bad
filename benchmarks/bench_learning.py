"""Learning parity: our train.py against timm's own train.py, same recipe, several seeds.

The seed's recipe (``configs/res2net/res2net_50_gpu.yaml``) scaled to the bundled digits: 10
classes, 64 px, 8 epochs, batch 32, lr 0.1, 1 warm-up epoch then cosine, crop scale 0.35-1,
random erasing / colour jitter / flips off, mixup 0.2 and label smoothing 0.1 kept, bf16
autocast (MindCV's O2 on a CPU). timm runs from its repository as an outside reference (its
code is not part of this project): pass the path of timm's ``train.py``.

    python benchmarks/bench_learning.py --timm-train /path/to/pytorch-image-models/train.py [--seeds 0 1 2]

Runs go one after another (never side by side), alternating ours and timm's per seed, and the
script prints val top-1 per epoch, then the mean and spread of the final top-1 and one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from res2net.data import write_digits_dataset
from res2net.speed.results import add_record_argument, record_if_asked

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs/res2net/res2net_50_gpu.yaml"
EPOCHS = 8

OURS = ["--num_classes", "10", "--image_resize", "64", "--epoch_size", str(EPOCHS), "--batch_size", "32",
        "--lr", "0.1", "--warmup_epochs", "1", "--decay_epochs", str(EPOCHS - 1), "--scale", "0.35", "1.0",
        "--re_prob", "0", "--color_jitter", "None", "--hflip", "0", "--distribute", "False", "--val_interval", "1",
        "--num_parallel_workers", "1", "--keep_checkpoint_max", "1", "--log_interval", "1000"]
TIMM = ["--model", "res2net50_26w_4s", "--num-classes", "10", "--img-size", "64", "--epochs", str(EPOCHS),
        "-b", "32", "--lr", "0.1", "--opt", "momentum", "--momentum", "0.9", "--weight-decay", "1e-4",
        "--sched", "cosine", "--warmup-epochs", "1", "--smoothing", "0.1", "--mixup", "0.2", "--scale", "0.35", "1",
        "--hflip", "0", "--color-jitter", "0", "--reprob", "0", "--amp", "--amp-dtype", "bfloat16",
        "--device", "cpu", "--no-prefetcher", "--workers", "1", "--crop-pct", "0.875",
        "--interpolation", "bilinear", "--train-split", "train", "--val-split", "val"]


def run(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def ours(data: Path, out: Path, seed: int) -> tuple[list[float], float]:
    seconds = run([sys.executable, str(REPO / "train.py"), "-c", str(RECIPE), "--data_dir", str(data),
                   "--ckpt_save_dir", str(out), "--seed", str(seed), *OURS], REPO)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [row["val_top1"] for row in rows], seconds


def timm(train_py: Path, data: Path, out: Path, seed: int) -> tuple[list[float], float]:
    seconds = run([sys.executable, str(train_py), "--data-dir", str(data), "--output", str(out), "--experiment",
                   "run", "--seed", str(seed), *TIMM], train_py.parent)
    with (out / "run" / "summary.csv").open() as handle:
        return [float(row["eval_top1"]) for row in csv.DictReader(handle)], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", type=Path, required=True, help="timm's train.py (pytorch-image-models)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_record_argument(parser, "learning")
    args = parser.parse_args()
    results: dict[str, list[tuple[list[float], float]]] = {"ours": [], "timm": []}
    with tempfile.TemporaryDirectory(prefix="res2net-learning-") as tmp:
        root = Path(tmp)
        write_digits_dataset(root / "digits", image_size=64)
        for seed in args.seeds:
            results["ours"].append(ours(root / "digits", root / f"ours_{seed}", seed))
            results["timm"].append(timm(args.timm_train.resolve(), root / "digits", root / f"timm_{seed}", seed))
            for name in ("ours", "timm"):
                curve, seconds = results[name][-1]
                print(f"{name} seed {seed}: " + " ".join(f"{v:.1f}" for v in curve) + f"  ({seconds:.0f} s)",
                      flush=True)
    summary = {}
    for name, runs in results.items():
        finals = [curve[-1] for curve, _ in runs]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        summary[name] = {"final_top1": finals, "mean": round(statistics.mean(finals), 2), "stdev": round(spread, 2),
                         "seconds": [round(s) for _, s in runs]}
        print(f"{name}: final val top-1 mean {statistics.mean(finals):.2f} +- {spread:.2f} over seeds {args.seeds}")
    summary["ours_minus_timm"] = round(summary["ours"]["mean"] - summary["timm"]["mean"], 2)
    print(json.dumps(summary))
    record_if_asked(args, summary, {"seeds": args.seeds})


if __name__ == "__main__":
    main()
