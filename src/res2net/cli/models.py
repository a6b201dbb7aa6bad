"""``res2net models``: the family as a table (names, parameters, compute, published weights and top-1).

The README's model table is this command's ``--format markdown`` output (a test keeps them equal),
so the facts live once, in the registry.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io

from ..models.registry import REGISTRY, Architecture

COLUMNS = ("model", "other names", "params (M)", "GMACs @224", "weights: top-1 %")
FORMATS = ("table", "csv", "markdown")


def add_models_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("models", aliases=["list"], help="list the architectures, their names and weights",
                                   description="One row per architecture: the names it answers to, parameters with "
                                   "1000 classes, multiply-accumulates per 224x224 image (convolutions and "
                                   "classifier), and each published weight tag with its ImageNet top-1.")
    parser.add_argument("pattern", nargs="?", default=None, help="shell-style filter on any name, e.g. 'res2net50*'")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.set_defaults(handler=run_models)
    return parser


def _row(arch: Architecture) -> tuple[str, ...]:
    aliases = sorted(n for n, entry in REGISTRY.names.items() if entry.architecture == arch.name and n != arch.name)
    weights = ", ".join(f"{tag} {cfg.top1:.2f}" if cfg.top1 is not None else tag
                        for tag, cfg in REGISTRY.weights[arch.name].items())
    return (arch.name, ", ".join(aliases), f"{arch.num_params / 1e6:.2f}" if arch.num_params else "",
            f"{arch.macs / 1e9:.2f}" if arch.macs else "", weights or "none published")


def model_rows(pattern: str | None = None) -> list[tuple[str, ...]]:
    """One row per architecture with a name matching ``pattern`` (all when None), in registry order."""
    rows = []
    for arch in REGISTRY.architectures.values():
        names = [n for n, entry in REGISTRY.names.items() if entry.architecture == arch.name]
        if pattern is None or any(fnmatch.fnmatchcase(n, pattern) for n in names):
            rows.append(_row(arch))
    return rows


def render(rows: list[tuple[str, ...]], fmt: str) -> str:
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([COLUMNS, *rows])
        return out.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * len(COLUMNS)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [COLUMNS, *rows])


def run_models(args: argparse.Namespace) -> int:
    print(render(model_rows(args.pattern), args.format))
    return 0
