"""Keep freed host memory inside the process while training on CPU (recipe key ``host_memory``).

PyTorch's CPU tensors come straight from ``malloc``. glibc serves a large request with a fresh
``mmap`` and returns it to the kernel on ``free`` (and trims the top of its heap the same way),
so every activation map of a training step is new memory that faults in page by page, zeroed
by the kernel, each step. Raising both of glibc's thresholds keeps that memory in the process;
raising only the trim threshold is worse than nothing (glibc then stops adapting its mmap
threshold and maps every large tensor), so both are set. ``python benchmarks/bench_host_memory.py``
measures the step time and page faults of each setting in fresh processes.

The cost is that the process keeps its peak heap until it exits, which a training process
reaches anyway. This is what Intel's and PyTorch's CPU tuning guides get by preloading jemalloc
or tcmalloc, done with glibc's own ``mallopt`` so nothing has to be set before the interpreter
starts. It changes the whole process, so only the trainer calls it, never an import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Large enough for every activation map of ImageNet-sized training on one host.
RETAIN_BYTES = 1 << 30


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (the only one with these ``mallopt`` parameters), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def retain_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the kernel; True if it is now so.

    Called once per process (cached); a no-op returning False off glibc (macOS, musl, Windows).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES)
    )


def host_memory_label(retained: bool) -> str:
    """How run lines and benchmark reports name the process's setting."""
    return "retained" if retained else "allocator default"
