"""The console script answers ``--help`` instantly and takes both flag spellings.

Generated from the parser itself: a new subcommand is covered here without touching this file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from res2net.cli import build_parser
from res2net.config import load_config
from res2net.config.spelling import OneSpellingFormatter


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(subcommands())
#: Python's own start-up is ~0.1 s; torch's import alone takes seconds, which this bound would catch.
HELP_BOUND_S = 1.5


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS)], ids=lambda a: " ".join(a))
def test_help_answers_without_importing_torch(argv: list[str]) -> None:
    code = (f"import sys\nfrom res2net.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('torch imported:', 'torch' in sys.modules)")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and done.stdout.rstrip().endswith("torch imported: False"), done.stdout[-500:]
    assert seconds < HELP_BOUND_S, f"{' '.join(argv)} took {seconds:.2f} s"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("train", "validate", "train-detection")])
def test_every_long_option_takes_both_spellings_and_help_shows_one(command: str) -> None:
    parser = subcommands()[command]
    assert parser.formatter_class is OneSpellingFormatter
    text = parser.format_help()
    for action in parser._actions:
        for alias in getattr(action, "alternate_spellings", ()):
            preferred = action.option_strings[0]
            assert preferred.replace("-", "_") == alias.replace("-", "_") and "_" not in preferred[2:]
            assert parser._option_string_actions[alias] is action
            assert alias not in text.replace(preferred, "")


def test_both_spellings_reach_the_same_value() -> None:
    parser = build_parser()
    dashed = parser.parse_args(["serve", "--model", "res2net50", "--max-batch-size", "4"])
    underscored = parser.parse_args(["serve", "--model", "res2net50", "--max_batch_size", "4"])
    assert dashed.max_batch_size == underscored.max_batch_size == 4
    assert "--max_batch_size" not in parser.format_help()
    # train.py / validate.py keep MindCV's underscores and take dashes too.
    assert load_config(["--num-classes", "5"], purpose="train").num_classes == 5
    assert load_config(["--num_classes", "5"], purpose="train").num_classes == 5


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_a_handler_or_a_router(command: str) -> None:
    """What main() calls for each command: a handler, a recipe handler (schedule, finetune: their unknown flags are
    recipe keys), or the recipe routes (train, validate, train-detection)."""
    from res2net.cli import RECIPE_COMMANDS

    defaults = subcommands()[command]._defaults
    assert command in RECIPE_COMMANDS or callable(defaults.get("handler")) or callable(defaults.get("recipe_handler"))
