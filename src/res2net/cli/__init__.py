"""The ``res2net`` console script and the ``train.py`` / ``validate.py`` entry points.

A thin layer: each subcommand's parser lives in a module of this package that imports nothing
heavy, and its handler imports what it needs when it runs, so ``res2net --help`` and every
``res2net COMMAND --help`` answer without loading torch. This module routes, gives every long
option both spellings (``--max-batch-size`` / ``--max_batch_size``), and turns every
:class:`~res2net.errors.UserError` into one line on stderr and a non-zero exit status instead of
a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ..config.spelling import accept_both_spellings
from ..errors import UserError
from ..provenance import invoked_as
from ..serve.cli import add_serve_parser
from .benchmark import add_benchmark_parser
from .convert import add_convert_parser
from .data import add_demo_data_parser, add_make_shards_parser, add_prepare_imagenet_parser
from .detection import add_evaluate_detection_parser, add_predict_detection_parser, add_train_detection_parser
from .finetune import add_finetune_parser, add_plot_parser
from .inference import add_export_parser, add_predict_parser, add_push_to_hub_parser
from .kernels import add_build_kernels_parser
from .models import add_models_parser
from .schedule import add_schedule_parser

#: Commands whose every further word belongs to a recipe parser (MindCV's flags).
RECIPE_COMMANDS = ("train", "validate", "train-detection")
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], argparse.ArgumentParser], ...] = (
    add_models_parser,
    add_demo_data_parser,
    add_prepare_imagenet_parser,
    add_make_shards_parser,
    add_schedule_parser,
    add_finetune_parser,
    add_plot_parser,
    add_build_kernels_parser,
    add_convert_parser,
    add_predict_parser,
    add_export_parser,
    add_push_to_hub_parser,
    add_serve_parser,
    add_benchmark_parser,
    add_train_detection_parser,
    add_evaluate_detection_parser,
    add_predict_detection_parser,
)


def train_main(argv: Sequence[str]) -> int:
    """``python train.py ...`` with MindCV's flags."""
    from ..config import load_config

    cfg = load_config(list(argv), purpose="train")  # --help answers here, before torch is imported
    from ..train import train

    result = train(cfg)
    if result.final is not None:
        print(f"final: top-1 {result.final.top1:.2f}%, top-5 {result.final.top5:.2f}% "
              f"({result.final.num_samples} images); best top-1 {result.best_top1:.2f}%")
    return 0


def validate_main(argv: Sequence[str]) -> int:
    """``python validate.py ...`` with MindCV's flags."""
    from ..config import load_config

    cfg = load_config(list(argv), purpose="validate")
    from ..validation import validate

    validate(cfg)
    return 0


def train_detection_main(argv: Sequence[str]) -> int:
    """``res2net train-detection ...``: a flat detection recipe and its flags."""
    from ..detection.config import load_detection_config

    cfg = load_detection_config(list(argv))
    from ..detection.cli import train_detection

    return train_detection(cfg)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="res2net", description="The Res2Net family for PyTorch.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("train", "train from a MindCV-style recipe (same flags as train.py)"),
                            ("validate", "validate a checkpoint (same flags as validate.py)")):
        subparsers.add_parser(name, help=help_text, add_help=False).add_argument("args", nargs=argparse.REMAINDER)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return accept_both_spellings(parser, "dash")


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
    if argv is None:
        return _main(sys.argv[1:])
    with invoked_as(["res2net", *argv]):
        return _main(list(argv))


def _main(argv: list[str]) -> int:
    if argv and argv[0] in RECIPE_COMMANDS:
        entry = {"train": train_main, "validate": validate_main, "train-detection": train_detection_main}[argv[0]]
        return _run(lambda: entry(argv[1:]))
    parser = build_parser()
    args, leftover = parser.parse_known_args(argv)
    recipe_handler = getattr(args, "recipe_handler", None)
    if recipe_handler is not None:  # `schedule`, `finetune`: the rest are recipe overrides
        return _run(lambda: recipe_handler(args, leftover))
    if leftover:
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    return _run(lambda: args.handler(args))


def script_main(entry: Callable[[Sequence[str]], int]) -> None:
    """For ``train.py`` / ``validate.py``: run ``entry`` on sys.argv and exit with its status."""
    sys.exit(_run(lambda: entry(sys.argv[1:])))
