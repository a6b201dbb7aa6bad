"""Keep freed host memory inside the process while training on CPU.

PyTorch's CPU tensors come straight from ``malloc``. glibc serves a large request with a fresh
``mmap`` and returns it to the kernel on ``free`` (and trims the top of its heap the same way),
so every activation map of a training step is new memory that faults in page by page, zeroed
by the kernel, each step. ``python benchmarks/bench_host_memory.py`` (res2net50, batch 16,
224 px, 2 Xeon cores): the bf16 step took 86,943 minor page faults and 779.6 ms by default,
2,274 and 724.5 ms with both of glibc's thresholds raised (1.08x); fp32 359,963 faults and
1956 ms, then 5,018 and 1759 ms (1.11x). Raising only the trim threshold is worse than doing
nothing (bf16 1148 ms, 543,088 faults): glibc then stops adapting its mmap threshold and maps
every large tensor, so both are set.

The cost is that the process keeps its peak heap until it exits, which a training process
reaches anyway (peak RSS 2172 -> 2208 MiB in bf16, 3050 -> 3364 MiB in fp32). This is what
Intel's and PyTorch's CPU tuning guides get by preloading jemalloc or tcmalloc, done here with
glibc's own ``mallopt`` so nothing has to be set before the interpreter starts.
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
