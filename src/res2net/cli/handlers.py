"""Handlers that import their implementation when they run, so building the parsers imports nothing heavy."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def lazy_handler(target: str) -> Handler:
    """The handler ``"package.module:function"``, imported on its first call."""
    module_name, function_name = target.split(":")

    def handler(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(module_name), function_name)(args))

    handler.__qualname__ = handler.__name__ = function_name
    return handler


RecipeHandler = Callable[[argparse.Namespace, list[str]], int]


def lazy_recipe_handler(target: str) -> RecipeHandler:
    """Like :func:`lazy_handler`, for commands whose unknown flags are recipe overrides (``--lr 0.01``)."""
    module_name, function_name = target.split(":")

    def handler(args: argparse.Namespace, recipe_flags: list[str]) -> int:
        return int(getattr(importlib.import_module(module_name), function_name)(args, recipe_flags))

    handler.__qualname__ = handler.__name__ = function_name
    return handler
