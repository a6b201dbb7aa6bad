"""``optimize_for_inference``: the fastest way this package knows to run a model on a CPU.

Every precision starts from the BatchNorm-folded model (:mod:`.fold`) exported to ONNX. The backend per
precision is the one ``benchmarks/bench_inference.py`` measured fastest (contenders interleaved in one process;
figures in docs/performance.md): OpenVINO for fp32 (static shape, one stream), for bf16 (its bf16 precision hint;
onnxruntime has no bf16 CPU convolutions and ``torch.compile`` was slower and compiles for tens of seconds) and
for int8 (NNCF's post-training quantisation on the caller's calibration images). OpenVINO's compiled shapes and
NNCF's int8 model are cached on disk (see :mod:`.openvino_backend`). Without OpenVINO (the ``openvino`` extra)
each precision falls back, with one note, to the next best: onnxruntime (:mod:`.onnx_runtime`) for fp32 and int8,
``torch.compile`` bf16 (eager bf16 without a C++ compiler). On a CPU without bf16 instructions, bf16 says so once
and runs in float32. Whatever the backend, the result takes float32 NCHW images of any batch size (and any
spatial size the network accepts) and returns float32 logits.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Literal

import torch
from torch import nn

from ..cpu_training.kernels import compiler_available
from .fold import fold_batchnorm
from .onnx_runtime import OnnxRuntimeModule, onnx_bytes, quantize_int8, require_onnxruntime
from .openvino_backend import OPENVINO_EXTRA, OpenVinoModule, cpu_has_bf16, openvino_available, quantize_int8_openvino
from .torch_backend import ChannelsLastModule

Precision = Literal["fp32", "bf16", "int8"]
Backend = Literal["auto", "openvino", "onnxruntime", "torch"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
BACKENDS: tuple[str, ...] = ("auto", "openvino", "onnxruntime", "torch")


class BackendFallbackWarning(UserWarning):
    """The fastest backend for a precision is not usable here; a slower one runs instead."""


def _onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _check_calibration(images: torch.Tensor | None, example_input_size: tuple[int, int, int]) -> torch.Tensor:
    if images is None:
        raise ValueError(
            "int8 quantisation needs calibration_images: a float32 (N, 3, H, W) tensor of a few dozen "
            "preprocessed images like the ones the model will see"
        )
    if images.dim() != 4 or images.shape[1] != example_input_size[0] or images.shape[0] == 0:
        raise ValueError(
            f"calibration_images must be a non-empty (N, {example_input_size[0]}, H, W) tensor, "
            f"got shape {tuple(images.shape)}"
        )
    return images.detach().to(torch.float32).cpu()


def choose_backend(precision: Precision, backend: Backend = "auto") -> str:
    """The backend that will run ``precision`` here: ``backend`` if given (it must be usable),
    else the measured fastest that is installed, with one note when that is not OpenVINO."""
    if backend == "openvino" and not openvino_available():
        raise ValueError(f"backend 'openvino' needs OpenVINO: {OPENVINO_EXTRA}")
    if backend == "onnxruntime":
        if precision == "bf16":
            raise ValueError("onnxruntime has no bf16 CPU kernels; use backend 'openvino' or 'torch'")
        require_onnxruntime()
    if backend == "torch" and precision == "int8":
        raise ValueError("int8 runs in OpenVINO or onnxruntime; backend 'torch' has fp32 and bf16")
    if backend != "auto":
        return backend
    if openvino_available():
        return "openvino"
    fallback = "torch" if precision == "bf16" or not _onnxruntime_available() else "onnxruntime"
    if precision == "int8":
        require_onnxruntime()
    warnings.warn(
        f"OpenVINO is not installed ({OPENVINO_EXTRA}): {precision} runs in {fallback}, which measured slower",
        BackendFallbackWarning,
        stacklevel=3,
    )
    return fallback


def optimize_for_inference(
    model: nn.Module,
    precision: Precision = "fp32",
    *,
    calibration_images: torch.Tensor | None = None,
    example_input_size: tuple[int, int, int] = (3, 224, 224),
    backend: Backend = "auto",
) -> nn.Module:
    """A fast inference version of ``model`` (which is left unchanged).

    Args:
        model: a classifier as :func:`res2net.create_model` makes it (any family member,
            any number of classes); it is copied, not modified.
        precision: ``fp32`` (logits match the eager model to ~1e-6), ``bf16`` (~1% relative)
            or ``int8`` (post-training static quantisation).
        calibration_images: int8 only, required: preprocessed float32 ``(N, 3, H, W)``
            images whose activation ranges set the quantisation scales.
        example_input_size: ``(C, H, W)`` used to trace the graph for export; the result
            still accepts other batch and spatial sizes.
        backend: ``auto`` picks the measured fastest installed backend (above); ``openvino``,
            ``onnxruntime`` (fp32, int8) or ``torch`` (fp32, bf16: eager oneDNN, no compile
            wait) force one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    images = _check_calibration(calibration_images, example_input_size) if precision == "int8" else None
    chosen = choose_backend(precision, backend)
    folded = fold_batchnorm(model)
    if chosen == "torch":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        compile_model = precision == "bf16" and backend == "auto" and compiler_available()
        return ChannelsLastModule(folded, dtype, compile_model=compile_model)
    graph = onnx_bytes(folded, example_input_size)
    if chosen == "onnxruntime":
        if precision == "int8":
            assert images is not None
            return OnnxRuntimeModule(quantize_int8(graph, images), precision="int8")
        return OnnxRuntimeModule(graph, precision="fp32")
    if precision == "int8":
        assert images is not None
        return OpenVinoModule(quantize_int8_openvino(graph, images), precision="int8")
    if precision == "bf16" and not cpu_has_bf16():
        warnings.warn("this CPU has no bf16 instructions (AVX512-BF16 or AMX): bf16 runs in float32",
                      BackendFallbackWarning, stacklevel=2)
        return OpenVinoModule(graph, precision="fp32")
    return OpenVinoModule(graph, precision=precision)
