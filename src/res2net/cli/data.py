"""``res2net demo-data``, ``prepare-imagenet`` and ``make-shards``: the commands that write datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from .handlers import lazy_handler


def add_demo_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``demo-data DIR [--task T] [--image-size N] [--val-fraction F] [--seed S]``."""
    parser = subparsers.add_parser(
        "demo-data",
        help="write the bundled handwritten-digits dataset as an ImageNet-style JPEG folder",
        description="Write scikit-learn's handwritten digits (bundled) as ImageNet-style class folders of JPEGs, "
        "or as canvases with COCO boxes and masks for detection.",
    )
    parser.add_argument("dir", type=Path, help="output folder (train/ and val/ are created inside)")
    parser.add_argument("--task", choices=("classification", "detection"), default="classification",
                        help="classification: class folders; detection: digits on canvases with COCO boxes, "
                        "instance and semantic masks (default classification)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="classification: side of the upscaled images (default 64); detection: canvas side "
                        "(default 128)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")
    parser.set_defaults(handler=lazy_handler("res2net.data.demo:run_demo_data"))
    return parser


def add_prepare_imagenet_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``prepare-imagenet VAL_DIR GROUND_TRUTH SYNSETS OUT_DIR [--copy]``."""
    parser = subparsers.add_parser(
        "prepare-imagenet",
        help="arrange the flat ILSVRC2012 val folder into class folders",
        description="Link each ILSVRC2012 validation image into OUT_DIR/<wnid>/ using the devkit's ground-truth "
        "labels and synset order.",
    )
    parser.add_argument("val_dir", type=Path, help="folder holding ILSVRC2012_val_*.JPEG")
    parser.add_argument("ground_truth", type=Path, help="devkit data/ILSVRC2012_validation_ground_truth.txt")
    parser.add_argument("synsets", type=Path,
                        help="devkit data/meta.mat, or a text file of WNIDs in ILSVRC2012_ID order")
    parser.add_argument("out_dir", type=Path, help="output split folder, e.g. /data/imagenet/val")
    parser.add_argument("--copy", action="store_true", help="copy files instead of hard-linking them")
    parser.set_defaults(handler=lazy_handler("res2net.data.imagenet:run_prepare_imagenet"))
    return parser


def add_make_shards_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``make-shards DATA_DIR OUT_DIR [--shard-size N] [--seed S]``."""
    parser = subparsers.add_parser(
        "make-shards",
        help="write an ImageNet-style folder as webdataset tar shards (dataset: webdataset)",
        description="Write DATA_DIR/train and DATA_DIR/val as OUT_DIR/train-%%06d.tar, val-%%06d.tar and index.json.",
    )
    parser.add_argument("data_dir", help="folder with train/<class>/* and val/<class>/*")
    parser.add_argument("out_dir", help="folder for the shards and index.json")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stored training order (default 0)")
    parser.set_defaults(handler=lazy_handler("res2net.data.shards:run_make_shards"))
    return parser
