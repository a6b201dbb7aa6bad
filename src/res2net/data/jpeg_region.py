"""Decode only the region of a JPEG that a crop will keep (libjpeg-turbo 3's cropping region).

A random-resized crop keeps on average ~40% of a photo (scale 0.08-1), yet a plain decode runs
the inverse DCT, chroma upsampling and colour conversion over every pixel. TurboJPEG 3's
``tj3SetCroppingRegion`` skips the rows above and below the region (libjpeg's
``jpeg_skip_scanlines``) and the columns outside it (``jpeg_crop_scanline``): less decode time
for the recipe's crops (``benchmarks/bench_dataloader.py`` times both on 500x375 photos). No
maintained Python binding exposes it (simplejpeg,
PyTurboJPEG, imagecodecs, torchvision and Pillow decode whole images or crop losslessly into a
new JPEG), so this module calls the documented C API through ctypes, as PyTurboJPEG does for the
rest of it.

The pixels are the full decode's, bit for bit: the region starts at the iMCU boundary (the API's
requirement) before the first kept column and ends one iMCU after the last, so that the fancy
(smooth) chroma upsampling of the edge columns sees the neighbours it sees in a full decode
(libjpeg treats a region's edge as the image's); the caller receives exactly the box it asked
for. ``tests/test_jpeg_region.py`` checks this against simplejpeg's full decode on 4:4:4, 4:2:2,
4:2:0 and greyscale files, progressive ones and each DCT scale.

The library comes from ``RES2NET_TURBOJPEG`` (a path), else the ``turbojpeg`` wheel (the
``fastjpeg`` extra, which bundles libturbojpeg 3), else the system's ``libturbojpeg`` if it is
version 3. Without one, :func:`available` is False and callers decode whole images as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
import os
import threading
from collections.abc import Iterator
from ctypes import Structure, c_char_p, c_int, c_size_t, c_void_p

import numpy as np

_TJINIT_DECOMPRESS = 1
_TJPARAM_SUBSAMP = 4
_TJPARAM_JPEGWIDTH = 5
_TJPARAM_JPEGHEIGHT = 6
_TJPF_RGB = 0
# iMCU width in pixels per TJSAMP (444, 422, 420, GRAY, 440, 411, 441), from turbojpeg.h.
_MCU_WIDTH = (8, 16, 16, 8, 8, 32, 8)


class _Region(Structure):
    _fields_ = [("x", c_int), ("y", c_int), ("w", c_int), ("h", c_int)]


class _ScalingFactor(Structure):
    _fields_ = [("num", c_int), ("denom", c_int)]


def _candidate_paths() -> Iterator[str]:
    """Where to look, best first; lazily, because the system search runs ``ldconfig``."""
    if os.environ.get("RES2NET_TURBOJPEG"):
        yield os.environ["RES2NET_TURBOJPEG"]
    try:
        files = importlib.metadata.files("turbojpeg") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    yield from (str(f.locate()) for f in files if "libturbojpeg" in f.name)
    system = ctypes.util.find_library("turbojpeg")
    if system:
        yield system


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The first TurboJPEG >= 3 library found, with its signatures declared; None if there is none."""
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "tj3SetCroppingRegion"):  # TurboJPEG 2 (e.g. Debian's libturbojpeg0 2.1)
            continue
        lib.tj3Init.restype = c_void_p
        lib.tj3Init.argtypes = [c_int]
        lib.tj3Destroy.argtypes = [c_void_p]
        lib.tj3DecompressHeader.argtypes = [c_void_p, c_char_p, c_size_t]
        lib.tj3Get.argtypes = [c_void_p, c_int]
        lib.tj3SetScalingFactor.argtypes = [c_void_p, _ScalingFactor]
        lib.tj3SetCroppingRegion.argtypes = [c_void_p, _Region]
        lib.tj3Decompress8.argtypes = [c_void_p, c_char_p, c_size_t, c_void_p, c_int, c_int]
        return lib
    return None


def available() -> bool:
    """Whether region decoding is possible here (a TurboJPEG 3 library was found)."""
    return _library() is not None


class _Decompressor:
    """A TurboJPEG decompressor handle, destroyed (``tj3Destroy``) with this object."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self.handle: int | None = lib.tj3Init(_TJINIT_DECOMPRESS)

    def __del__(self) -> None:
        if self.handle:
            self._lib.tj3Destroy(self.handle)
            self.handle = None


class _Handle(threading.local):
    """One decompressor per thread (a TurboJPEG handle carries per-image state), made on first
    use in that thread and kept for its lifetime (data loading reuses its threads); it is
    destroyed when the thread ends and its thread-local state goes."""

    decompressor: _Decompressor | None = None

    def get(self, lib: ctypes.CDLL) -> int | None:
        if self.decompressor is None:
            self.decompressor = _Decompressor(lib)
        return self.decompressor.handle


_local = _Handle()


def decode_region(data: bytes, box: tuple[int, int, int, int], reduce: int = 1) -> np.ndarray | None:
    """The (h, w, 3) RGB pixels of ``box`` = (top, left, h, w) of the JPEG decoded at 1/``reduce``.

    ``box`` is in the reduced image's coordinates (its size is the original's divided by
    ``reduce``, rounded up). Returns a view into a slightly wider decode, or None when the
    library is missing or the file does not decode cleanly; callers then decode the whole
    image, whose decoder reports the problem.
    """
    lib = _library()
    handle = _local.get(lib) if lib is not None else None
    if not handle or lib.tj3DecompressHeader(handle, data, len(data)) != 0:
        return None
    subsampling = lib.tj3Get(handle, _TJPARAM_SUBSAMP)
    if not 0 <= subsampling < len(_MCU_WIDTH):
        return None
    width = -(-lib.tj3Get(handle, _TJPARAM_JPEGWIDTH) // reduce)
    height = -(-lib.tj3Get(handle, _TJPARAM_JPEGHEIGHT) // reduce)
    top, left, h, w = box
    if not (0 <= top and 0 <= left and 0 < h and 0 < w and top + h <= height and left + w <= width):
        raise ValueError(f"box {box} outside the {width}x{height} image")
    mcu = max(1, _MCU_WIDTH[subsampling] // reduce)
    x0 = max(0, (left - 1) // mcu * mcu)
    x1 = min(width, left + w + mcu)
    region = _Region(x0, top, x1 - x0, h)
    if lib.tj3SetScalingFactor(handle, _ScalingFactor(1, reduce)) != 0:
        return None
    if lib.tj3SetCroppingRegion(handle, region) != 0:
        return None
    out = np.empty((h, region.w, 3), np.uint8)
    if lib.tj3Decompress8(handle, data, len(data), out.ctypes.data, 0, _TJPF_RGB) != 0:
        return None
    return out[:, left - x0 : left - x0 + w]
