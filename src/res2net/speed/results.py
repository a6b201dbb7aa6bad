"""Benchmark results as data: one JSON line per run, with everything needed to trust or redo it.

A figure without its machine, versions, commit and command cannot be compared with the next
one; prose that narrates runs goes stale. So every benchmark (``res2net benchmark --record``
and the scripts in ``benchmarks/``) appends a row to ``benchmarks/results/<name>.jsonl``, and
``docs/performance.md`` is rendered from the newest rows by ``benchmarks/render_performance.py``.
History lives in the rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from ..provenance import command_line, git_commit, host, versions


def make_row(benchmark: str, figures: dict[str, Any], *, settings: dict[str, Any] | None = None,
             folder: Path | None = None) -> dict[str, Any]:
    """One result: when, which code (the commit of the clone holding ``folder``, default the current
    directory), which machine and libraries, which command, what it measured."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "benchmark": benchmark,
        "commit": git_commit(folder or Path.cwd()),
        "host": host(),
        "versions": versions(),
        "command": command_line(),
        "settings": settings or {},
        "figures": figures,
    }


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one JSON line (the file and its folder are created when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row, sort_keys=False) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a results file, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


#: benchmarks/results/ of this clone (benchmark scripts run from a clone).
RESULTS_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "results"


def add_record_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--record``: append this run's figures to ``benchmarks/results/<name>.jsonl``."""
    parser.add_argument("--record", action="store_true", help=f"append the figures to benchmarks/results/{name}.jsonl")
    parser.set_defaults(record_name=name)


def record_if_asked(args: argparse.Namespace, figures: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
    """Append the row when ``--record`` was given, and say where."""
    if not getattr(args, "record", False):
        return
    path = RESULTS_DIR / f"{args.record_name}.jsonl"
    append_row(path, make_row(args.record_name, figures, settings=settings, folder=RESULTS_DIR.parent))
    print(f"recorded in {path}")
