"""OpenVINO execution of an exported graph, behind an ``nn.Module`` interface.

OpenVINO is the well-kept runtime for Intel (and AMD) CPUs, and it measured fastest at every
precision (``benchmarks/bench_inference.py``; see :mod:`.optimize`). Three things add to what
OpenVINO does by itself, each kept because that benchmark shows it pays on Res2Net-50:

* static shapes for the first two batch sizes a module sees (typically 1 and the working
  batch), one batch-dynamic model for any other: a static shape lets the CPU plugin pick its
  kernels ahead of time, but every compiled model holds its own copy of the weights (over
  100 MB for Res2Net-50), so serving's batch sizes 1..16 cannot each get one;
* one stream on exactly the threads torch is told to use (rather than the LATENCY hint's own
  choice), so ``torch.set_num_threads`` governs every backend;
* persistent caches under ``$RES2NET_HOME/openvino``: OpenVINO's compiled-blob cache
  (``CACHE_DIR``) and the int8 model NNCF made, keyed by the graph and the calibration images,
  so a second process starts without quantising again.

int8 is NNCF's post-training quantisation of the OpenVINO model (symmetric int8 weights and
activations, ranges from the caller's calibration images).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..home import home_dir

OPENVINO_EXTRA = "pip install 'res2net[openvino]'"
#: Batch sizes (per spatial size) compiled with a static shape; others share a dynamic-batch model.
STATIC_BATCH_SIZES = 2


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise UserError(f"OpenVINO is not installed: {OPENVINO_EXTRA}") from None
    return openvino


def cache_dir() -> Path:
    """``$RES2NET_HOME/openvino`` (default ``~/.cache/res2net/openvino``)."""
    return home_dir() / "openvino"


@functools.cache
def openvino_core() -> Any:
    """The process's one OpenVINO ``Core``, with the compiled-model cache under :func:`cache_dir`.

    One for the whole process, never released before exit: compiled models and their infer
    requests must not outlive the Core they came from, and modules are freed by the garbage
    collector in no particular order.
    """
    core = _openvino().Core()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    core.set_property({"CACHE_DIR": str(cache)})
    return core


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can compute in bf16 here (AVX512-BF16 or AMX)."""
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoModule(nn.Module):
    """Runs an ONNX graph (float32 NCHW in, float32 logits out) in OpenVINO's CPU plugin.

    ``precision`` is ``fp32`` or ``bf16`` (OpenVINO's inference precision hint) for a float
    graph, ``int8`` for a graph NNCF quantised. Input shapes are compiled on first use and kept.
    """

    def __init__(self, model: bytes | Any, *, precision: str, threads: int | None = None) -> None:
        super().__init__()
        self.precision = precision
        self.threads = threads or torch.get_num_threads()
        core = openvino_core()
        self._model = core.read_model(model) if isinstance(model, bytes) else model
        self._static: dict[tuple[int, ...], Any] = {}
        self._dynamic: dict[tuple[int, ...], Any] = {}

    def _config(self) -> dict[str, Any]:
        return {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
        }

    def _compile(self, shape: list[int]) -> tuple[Any, Any]:
        """(compiled model, its infer request): the request is used, the model kept alive beside it."""
        model = self._model.clone()
        model.reshape({model.inputs[0]: shape})
        compiled = openvino_core().compile_model(model, "CPU", self._config())
        return compiled, compiled.create_infer_request()

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape in self._static:
            return self._static[shape][1]
        image = shape[1:]
        if sum(1 for known in self._static if known[1:] == image) < STATIC_BATCH_SIZES:
            self._static[shape] = self._compile(list(shape))
            return self._static[shape][1]
        if image not in self._dynamic:
            self._dynamic[image] = self._compile([-1, *image])
        return self._dynamic[image][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())
        result = self._request(tuple(array.shape)).infer({0: array})
        # The output buffer belongs to the request and is overwritten by its next call.
        return torch.from_numpy(np.array(result[0], dtype=np.float32, copy=True))

    def extra_repr(self) -> str:
        return f"precision={self.precision}, backend=openvino, threads={self.threads}"


def quantize_int8_openvino(float_model: bytes, calibration_images: torch.Tensor) -> Any:
    """NNCF's int8 post-training quantisation of an ONNX graph, cached under :func:`cache_dir`.

    The cache key is the graph, the calibration images and the NNCF/OpenVINO versions, so the
    same model calibrated on the same images is quantised once per machine.
    """
    ov = _openvino()
    try:
        import nncf
    except ImportError:
        raise UserError(f"int8 through OpenVINO needs NNCF: {OPENVINO_EXTRA}") from None
    images = calibration_images.detach().to(torch.float32).contiguous().numpy()
    digest = hashlib.sha256()
    for part in (float_model, images.tobytes(), str(images.shape).encode(), nncf.__version__.encode(),
                 ov.__version__.encode()):
        digest.update(part)
    target = cache_dir() / f"int8-{digest.hexdigest()[:24]}.xml"
    core = openvino_core()
    if target.is_file() and target.with_suffix(".bin").is_file():
        return core.read_model(target)
    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset([images[i : i + 1] for i in range(images.shape[0])])
    # NNCF draws a progress bar on stdout (rich, no switch to turn it off); a CLI's last line
    # must stay its own (validate ends with one JSON line).
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(core.read_model(float_model), dataset, subset_size=images.shape[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{os.getpid()}.xml")
    ov.save_model(quantized, partial, compress_to_fp16=False)  # writes partial.xml and partial.bin
    os.replace(partial.with_suffix(".bin"), target.with_suffix(".bin"))
    os.replace(partial, target)  # the .xml last: a cached .xml always has its weights
    return quantized
