"""Where a result came from: the machine, the libraries, the code and the command.

A training run folder (``env.json``), a checkpoint's metadata and a benchmark row all record the same
facts, so a figure or a model can be traced to what made it.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    from .version import __version__

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


_invocation: list[str] | None = None


@contextmanager
def invoked_as(argv: Sequence[str]) -> Iterator[None]:
    """Record ``argv`` as this process's command while a CLI entry point runs with arguments handed to it
    (``res2net.cli.main([...])`` from Python), where ``sys.argv`` names the caller instead."""
    global _invocation
    outer, _invocation = _invocation, list(argv)
    try:
        yield
    finally:
        _invocation = outer


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``res2net ...`` for the console script, ``python SCRIPT ...`` otherwise."""
    argv = list(argv if argv is not None else _invocation if _invocation is not None else sys.argv)
    program = Path(argv[0]).name
    head = ["res2net"] if program == "res2net" else ["python", argv[0]]
    return shlex.join(head + argv[1:])


def accelerators() -> dict[str, Any]:
    """torch's CUDA and cuDNN versions and the GPUs' names, where torch is imported and sees any."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    found: dict[str, Any] = {"cuda": torch.version.cuda}
    if torch.cuda.is_available():
        found["cudnn"] = torch.backends.cudnn.version()
        found["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return found


def launcher() -> str:
    """What started this process: torchrun, mpirun, SLURM or a plain command."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    if "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_SIZE" in os.environ:
        return "mpirun"
    if "SLURM_PROCID" in os.environ:
        return "slurm"
    return "direct"


def environment(folder: Path | None = None) -> dict[str, Any]:
    """Everything above, for a run folder's ``env.json`` and a checkpoint's metadata."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(), "launcher": launcher(), "commit": git_commit(folder or Path.cwd()),
            "host": host(), "versions": versions(), "accelerators": accelerators()}
