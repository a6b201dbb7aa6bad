"""The ``res2net`` console script and the ``train.py`` / ``validate.py`` entry points.

A thin layer: each subcommand's parser and handler live beside the code they drive;
this module only routes, and turns every :class:`~res2net.errors.UserError` into one
line on stderr and a non-zero exit status instead of a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .benchmark import add_benchmark_parser, run_benchmark
from .config import load_config
from .convert import add_convert_parser, run_convert
from .data import add_demo_data_parser, add_prepare_imagenet_parser, run_demo_data, run_prepare_imagenet
from .data.shards import add_make_shards_parser, run_make_shards
from .detection.cli import (
    add_evaluate_detection_parser,
    add_predict_detection_parser,
    add_train_detection_parser,
    run_evaluate_detection,
    run_predict_detection,
    run_train_detection,
)
from .errors import UserError
from .inference.export import add_export_parser, run_export
from .inference.predict import add_predict_parser, run_predict
from .models import REGISTRY, list_models
from .serve.cli import add_serve_parser, run_serve
from .train import train
from .train.schedule_cli import add_schedule_parser, run_schedule
from .validation import validate

Handler = Callable[[argparse.Namespace], int]
CONFIG_COMMANDS = ("train", "validate")


def train_main(argv: Sequence[str]) -> int:
    """``python train.py ...`` with MindCV's flags."""
    result = train(load_config(list(argv), purpose="train"))
    if result.final is not None:
        print(f"final: top-1 {result.final.top1:.2f}%, top-5 {result.final.top5:.2f}% "
              f"({result.final.num_samples} images); best top-1 {result.best_top1:.2f}%")
    return 0


def validate_main(argv: Sequence[str]) -> int:
    """``python validate.py ...`` with MindCV's flags."""
    validate(load_config(list(argv), purpose="validate"))
    return 0


def run_models(args: argparse.Namespace) -> int:
    for name in list_models(args.pattern):
        entry = REGISTRY.model_name(name)
        arch = REGISTRY.architectures[entry.architecture]
        tags = REGISTRY.weights[entry.architecture]
        weights = ", ".join(f"{tag} (top-1 {cfg.top1})" for tag, cfg in tags.items()) or "no weights"
        alias = "" if entry.architecture == name else f" = {entry.architecture} ({entry.origin} name)"
        print(f"{name:24s} {arch.description}{alias}; {weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="res2net", description="The Res2Net family for PyTorch.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("train", "train from a MindCV-style recipe (same flags as train.py)"),
                            ("validate", "validate a checkpoint (same flags as validate.py)")):
        sub = subparsers.add_parser(name, help=help_text, add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)
    models = subparsers.add_parser("models", aliases=["list"], help="list the model names and their weights")
    models.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'res2net50*'")
    models.set_defaults(handler=run_models)
    registrations: list[tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], Handler]] = [
        (add_demo_data_parser, run_demo_data),
        (add_prepare_imagenet_parser, run_prepare_imagenet),
        (add_make_shards_parser, run_make_shards),
        (add_convert_parser, run_convert),
        (add_predict_parser, run_predict),
        (add_export_parser, run_export),
        (add_serve_parser, run_serve),
        (add_benchmark_parser, run_benchmark),
        (add_train_detection_parser, run_train_detection),
        (add_evaluate_detection_parser, run_evaluate_detection),
        (add_predict_detection_parser, run_predict_detection),
    ]
    for add_parser, handler in registrations:
        add_parser(subparsers).set_defaults(handler=handler)
    add_schedule_parser(subparsers).set_defaults(takes_recipe_flags=True)
    return parser


def _run(entry: Callable[[], int]) -> int:
    try:
        return entry()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `res2net ... | head`: the reader has gone, which is not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - interpreter shutdown flushes and closes it
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``res2net COMMAND ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CONFIG_COMMANDS:
        entry = train_main if argv[0] == "train" else validate_main
        return _run(lambda: entry(argv[1:]))
    if argv and argv[0] == "train-detection":  # every further word belongs to the recipe parser
        return _run(lambda: run_train_detection(argparse.Namespace(args=argv[1:])))
    parser = build_parser()
    args, leftover = parser.parse_known_args(argv)
    if getattr(args, "takes_recipe_flags", False):  # `schedule`: the rest are recipe overrides
        return _run(lambda: run_schedule(args, leftover))
    if leftover:
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    return _run(lambda: args.handler(args))


def script_main(entry: Callable[[Sequence[str]], int]) -> None:
    """For ``train.py`` / ``validate.py``: run ``entry`` on sys.argv and exit with its status."""
    sys.exit(_run(lambda: entry(sys.argv[1:])))
