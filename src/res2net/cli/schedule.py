"""``res2net schedule``: the learning rate at every step of a recipe (recipe flags override its keys)."""

from __future__ import annotations

import argparse

from .handlers import lazy_recipe_handler


def add_schedule_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "schedule",
        help="print (or plot) the learning rate at every step of a recipe",
        description="The learning rate at every optimizer step of RECIPE's run, as train.py would set it. "
        "Recipe keys can be overridden with their flags (--lr 0.2, --epoch_size 10, ...).",
    )
    parser.add_argument("-c", "--config", required=True, metavar="RECIPE", help="the recipe YAML file")
    parser.add_argument("--steps-per-epoch", type=int, help="optimizer steps per epoch (default: from the data)")
    parser.add_argument("--world-size", type=int, default=1, help="processes sharing each step (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON list: the lr of every step")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the schedule into a PNG file")
    parser.set_defaults(recipe_handler=lazy_recipe_handler("res2net.train.schedule_cli:run_schedule"))
    return parser
