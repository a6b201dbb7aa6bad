"""``load_config``: MindCV's command line (``-c FILE`` then ``--key value`` overrides) on our schema.

Precedence is MindCV's: schema defaults, then the YAML file, then flags. Unlike MindCV,
every value is type-checked wherever it came from, and every mistake (unknown key, bad
value, argparse's own complaints) is one :class:`~res2net.errors.ConfigError` line with
exit code 2 instead of a traceback or a usage dump.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from .flat import load_yaml_document, recipe_parser, typed_values
from .schema import Config, build, check_mapping

Purpose = Literal["train", "validate"]
_DESCRIPTIONS = {
    "train": "Train a Res2Net model from a MindCV-compatible recipe.",
    "validate": "Validate a Res2Net model with a MindCV-compatible recipe.",
}


def load_config(argv: list[str], *, purpose: Purpose) -> Config:
    """Parse MindCV-style arguments (``-c recipe.yaml --lr 0.2 ...``) into a validated Config.

    ``purpose`` ("train" or "validate") selects the program name and description shown
    by ``--help`` and in messages; both share one schema, as in MindCV.
    """
    if purpose not in _DESCRIPTIONS:
        raise ValueError(f"purpose must be 'train' or 'validate', got {purpose!r}")
    return build(typed_values(Config, build_parser(purpose), argv))


def build_parser(purpose: Purpose) -> argparse.ArgumentParser:
    """The argparse parser with one ``--key`` flag per schema key, grouped as in MindCV."""
    return recipe_parser(Config, f"{purpose}.py", _DESCRIPTIONS[purpose])


def read_yaml(path: str) -> dict[str, Any]:
    """Read a recipe file into a mapping of known keys (values still raw)."""
    data = load_yaml_document(path)
    if data is None:
        return {}
    return dict(check_mapping(data, path))
