"""``res2net train-detection`` / ``evaluate-detection`` / ``predict-detection``.

``train-detection`` takes a flat recipe and ``--key value`` overrides, exactly like
``train.py`` does for classification; the other two take a checkpoint of such a run, which
holds everything needed to rebuild the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..distributed import resolve_device
from .checkpoint import model_from_dense_checkpoint, read_dense_checkpoint
from .config import TASKS, DetectionConfig, load_detection_config
from .data import CocoDenseDataset
from .engine import train_dense
from .evaluate import evaluate_dense
from .predict import predict_images


def add_train_detection_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-detection", add_help=False,
        help="train a detector / segmenter from a flat recipe (-c FILE, --key value overrides; --help lists keys)")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def run_train_detection(args: argparse.Namespace) -> int:
    result = train_dense(load_detection_config(list(args.args)))
    if result.metrics:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()}
        print(f"final: {json.dumps(shown)}; checkpoint {result.checkpoint}")
    return 0


def add_evaluate_detection_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate-detection", help="score a detection / segmentation checkpoint "
                                   "(COCO mAP, mIoU or MAE / max-F) on a COCO-format split")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data_dir", default=None, help="dataset root (default: the one the run trained on)")
    parser.add_argument("--split", default=None, help="split to score (default: the run's val_split)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    return parser


def run_evaluate_detection(args: argparse.Namespace) -> int:
    checkpoint = read_dense_checkpoint(args.checkpoint)
    cfg = DetectionConfig.from_dict(checkpoint.config, source=f"the config saved in {args.checkpoint}")
    device = resolve_device(args.device, 0)
    model = model_from_dense_checkpoint(checkpoint, args.checkpoint).to(device)
    dataset = CocoDenseDataset(Path(args.data_dir or cfg.data_dir), args.split or cfg.val_split)
    metrics = evaluate_dense(model, TASKS[checkpoint.builder], dataset, device, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            if isinstance(value, (int, float)):
                print(f"{name:16s} {value:.4f}" if isinstance(value, float) else f"{name:16s} {value}")
    return 0


def add_predict_detection_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict-detection", help="draw a checkpoint's boxes / masks onto images "
                                   "(PNG files)")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="folder for the drawings")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="boxes below this are not drawn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="also print the detections as JSON lines")
    return parser


def run_predict_detection(args: argparse.Namespace) -> int:
    checkpoint = read_dense_checkpoint(args.checkpoint)
    device = resolve_device(args.device, 0)
    model = model_from_dense_checkpoint(checkpoint, args.checkpoint).to(device)
    with torch.inference_mode():
        for record in predict_images(model, TASKS[checkpoint.builder], checkpoint.class_names, args.images,
                                     args.output, score_threshold=args.score_threshold, device=device):
            print(json.dumps(record) if args.json else f"{record['image']} -> {record['drawing']} "
                  f"({record['summary']})")
    return 0
