"""``res2net finetune`` and ``res2net plot``: adapt a model to your own images, and look at the runs."""

from __future__ import annotations

import argparse

from .handlers import lazy_handler, lazy_recipe_handler


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on a folder of class sub-folders (recipe flags such as --lr 0.0005 override)",
        description="Train NAME, starting from --weights, on DATA_DIR: a folder of class sub-folders of images "
        "(a seeded, stratified validation split is made when it has no train/ and val/). The new classifier gets "
        "the folder names as class names; the input size and normalisation are the weights' own. Ends with the "
        "best checkpoint, curves.png and a summary. Further flags are recipe keys (see `python train.py -h`).",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="class sub-folders of images (or train/ and val/)")
    parser.add_argument("--model", required=True, metavar="NAME", help="model name, e.g. res2net50 (res2net models)")
    parser.add_argument("--weights", required=True, metavar="TAG|FILE|none",
                        help="a weight tag of the model (e.g. official, mindcv: downloaded once), a checkpoint file "
                        "in any supported format, or none (train from scratch)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's, 20)")
    parser.add_argument("--output", metavar="DIR", default=None, help="run folder (default runs/finetune_NAME)")
    parser.add_argument("--image-size", type=int, default=None, help="training crop (default: the weights' own)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of each class held out for validation when DATA_DIR has no val/ (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the run (default 0)")
    parser.add_argument("--recipe", metavar="FILE", default=None, help="another recipe (default: the packaged one)")
    parser.set_defaults(recipe_handler=lazy_recipe_handler("res2net.train.finetune:run_finetune"))
    return parser


def add_plot_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plot", help="draw training runs' loss, validation top-1 and learning rate, overlaid (PNG)",
        description="Read each RUN_DIR's metrics.jsonl and draw them on one figure (matplotlib: the plot extra).")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (ckpt_save_dir of train.py)")
    parser.add_argument("--output", metavar="FILE.png", default=None,
                        help="where to write (default: RUN_DIR/curves.png for one run, ./curves.png for several)")
    parser.set_defaults(handler=lazy_handler("res2net.plots:run_plot"))
    return parser
