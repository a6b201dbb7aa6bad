"""What ``res2net train-detection`` / ``evaluate-detection`` / ``predict-detection`` run.

Their parsers are in :mod:`res2net.cli.detection`.

``train-detection`` takes a flat recipe and ``--key value`` overrides, exactly like
``train.py`` does for classification; the other two take a checkpoint of such a run, which
holds everything needed to rebuild the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..distributed import resolve_device
from .checkpoint import model_from_dense_checkpoint, read_dense_checkpoint
from .config import TASKS, DetectionConfig
from .data import CocoDenseDataset
from .engine import train_dense
from .evaluate import evaluate_dense
from .predict import predict_images


def train_detection(cfg: DetectionConfig) -> int:
    """``res2net train-detection``: train, then print the final metrics and checkpoint."""
    result = train_dense(cfg)
    if result.metrics:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.metrics.items()}
        print(f"final: {json.dumps(shown)}; checkpoint {result.checkpoint}")
    return 0


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
