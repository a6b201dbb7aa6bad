"""``res2net train-detection`` / ``evaluate-detection`` / ``predict-detection``.

``train-detection`` takes a flat recipe and ``--key value`` overrides, exactly like ``train.py``
does for classification; the other two take a checkpoint of such a run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .handlers import lazy_handler


def add_train_detection_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-detection", add_help=False,
        help="train a detector / segmenter from a flat recipe (-c FILE, --key value overrides; --help lists keys)")
    parser.add_argument("args", nargs=argparse.REMAINDER)  # routed to the recipe parser by res2net.cli.main
    return parser


def add_evaluate_detection_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate-detection", help="score a detection / segmentation checkpoint "
                                   "(COCO mAP, mIoU or MAE / max-F) on a COCO-format split")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir", default=None, help="dataset root (default: the one the run trained on)")
    parser.add_argument("--split", default=None, help="split to score (default: the run's val_split)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(handler=lazy_handler("res2net.detection.cli:run_evaluate_detection"))
    return parser


def add_predict_detection_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict-detection", help="draw a checkpoint's boxes / masks onto images "
                                   "(PNG files)")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="folder for the drawings")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="boxes below this are not drawn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="also print the detections as JSON lines")
    parser.set_defaults(handler=lazy_handler("res2net.detection.cli:run_predict_detection"))
    return parser
