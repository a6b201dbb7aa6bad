"""Benchmark results as data: one JSON line per run, with everything needed to trust or redo it.

A figure without its machine, versions, commit and command cannot be compared with the next
one; prose that narrates runs goes stale. So every benchmark (``res2net benchmark --record``
and the scripts in ``benchmarks/``) appends a row to ``benchmarks/results/<name>.jsonl``, and
``docs/performance.md`` is rendered from the newest rows by ``benchmarks/render_performance.py``.
History lives in the rows.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

#: CPU features that decide which kernels run (AVX-512, its bf16/VNNI extensions, AMX).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
#: Packages whose versions a row records when they are installed.
PACKAGES = ("res2net", "torch", "torchvision", "timm", "onnxruntime", "openvino", "numpy")


def host() -> dict[str, Any]:
    """The machine: CPU model, the instruction-set flags that matter, logical CPUs, OS."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags], "logical_cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}"}


def versions() -> dict[str, str]:
    """Python's and the packages' versions; this package's from its code (an editable install's
    metadata keeps the version it was installed at)."""
    from ..version import __version__

    found = {"python": platform.python_version(), "res2net": __version__}
    for package in PACKAGES:
        if package in found:
            continue
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_commit(folder: Path) -> str | None:
    """The checkout's short commit (``+dirty`` with uncommitted changes), or None outside a clone."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``res2net ...`` for the console script, ``python SCRIPT ...`` otherwise."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]).name
    head = ["res2net"] if program == "res2net" else ["python", argv[0]]
    return shlex.join(head + argv[1:])


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
