"""Build, find and load the fused CPU BatchNorm kernels (``csrc/batch_norm_cpu.cpp``).

The kernels are C++ compiled for the machine they run on (``-march=native``), like
torch.compile's CPU kernels, by ``torch.utils.cpp_extension`` with the system's C++ compiler
and ninja (the ``train`` extra). A build takes tens of seconds, so it happens only where
someone asked for it (:func:`load_kernels` with ``build=True``: the recipe's
``cpu_kernels: fused``, ``res2net build-kernels``), never on a forward pass. Builds live in
``$RES2NET_HOME/kernels/<key>``, where the key hashes the source, the flags, torch's version
and the CPU's instruction-set flags: a build made on another CPU or for another torch is never
loaded, it is simply not found.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import torch

from ..errors import UserError
from ..home import home_dir

SOURCE = Path(__file__).with_name("csrc") / "batch_norm_cpu.cpp"
FLAGS = ("-O3", "-march=native", "-fopenmp")
_loaded: dict[str, ModuleType] = {}


class KernelBuildError(UserError):
    """The kernels were asked for and cannot be built here (no compiler, no ninja, a compile error)."""


def _cpu_signature() -> bytes:
    """What ``-march=native`` compiles for: the CPU's instruction-set flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next((line for line in cpuinfo if line.startswith("flags")), "").encode()
    except OSError:
        return platform.processor().encode()


def build_key() -> str:
    """The name of this machine's build: source, flags, torch version and CPU flags, hashed."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + torch.__version__.encode()
                            + _cpu_signature())
    return f"res2net_batch_norm_{digest.hexdigest()[:16]}"


def build_dir() -> Path:
    return home_dir() / "kernels" / build_key()


def _built_library(name: str) -> Path | None:
    library = build_dir() / f"{name}.so"
    return library if library.is_file() else None


def compiler_available() -> bool:
    """Whether a C++ compiler is on PATH (``$CXX``, g++, c++ or clang++): what cpp_extension and
    inductor's C++ backend build with."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def _put_ninja_on_path() -> None:
    """cpp_extension runs ``ninja`` from PATH; the ``ninja`` wheel installs it next to the interpreter,
    which is not on PATH when a venv's python runs without the venv being activated."""
    if shutil.which("ninja") is not None:
        return
    with contextlib.suppress(ImportError):
        import ninja

        os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])


def _import(name: str, library: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, library)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(name: str) -> None:
    if not compiler_available():
        raise KernelBuildError("cpu_kernels: fused needs a C++ compiler (g++ or clang++ on PATH, or $CXX); "
                               "install one or use cpu_kernels: off")
    _put_ninja_on_path()
    # cpp_extension's import warns that a CUDA build of torch found no CUDA runtime; irrelevant here.
    extension_log = logging.getLogger("torch.utils.cpp_extension")
    level = extension_log.level
    extension_log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        extension_log.setLevel(level)
    folder = build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        cpp_extension.load(name, [str(SOURCE)], extra_cflags=list(FLAGS), extra_ldflags=["-fopenmp"],
                           build_directory=str(folder), verbose=False)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        last_line = (str(error).strip().splitlines() or [""])[-1]
        raise KernelBuildError(f"cannot build the fused CPU kernels ({type(error).__name__}: {last_line}); "
                               "use cpu_kernels: off") from None


def load_kernels(*, build: bool) -> ModuleType | None:
    """The kernels for this machine: loaded from an earlier build, or compiled now when ``build``
    (raising :class:`KernelBuildError` where that is impossible); None when not built and not
    ``build``."""
    name = build_key()
    if name in _loaded:
        return _loaded[name]
    library = _built_library(name)
    if library is None:
        if not build:
            return None
        _compile(name)
        library = _built_library(name)
        if library is None:
            raise KernelBuildError(f"the fused CPU kernels' build left no {name}.so in {build_dir()}")
    # cpp_extension.load also imported it under this name; reuse that module rather than load twice.
    module = sys.modules.get(name) or _import(name, library)
    _loaded[name] = module
    return module


def run_build_kernels(_: object) -> int:
    """``res2net build-kernels``."""
    started = time.perf_counter()
    load_kernels(build=True)
    print(f"fused CPU kernels ready in {build_dir()} ({time.perf_counter() - started:.1f} s)")
    return 0
