"""``optimize_for_inference``: the fastest way this package knows to run a model on CPU.

Every precision starts the same way: BatchNorm is folded into the convolutions
(:mod:`.fold`). The backend per precision was chosen by measurement on the 2-core
AVX-512-bf16/AMX development machine, Res2Net-50, batch 16, 224x224, in one process:

* fp32 -> onnxruntime: 28 img/s on a quiet machine, against 17 for eager oneDNN
  channels_last, 17 for TorchScript freeze + optimize_for_inference and 25 for
  ``torch.compile`` (inductor C++, with freezing), which also costs ~50 s of compilation
  per input shape;
* bf16 -> ``torch.compile`` (inductor C++ backend, frozen weights) of the bf16,
  channels_last model: 1.3-2x eager oneDNN bf16 in interleaved runs (eager itself beat
  autocast by 1.4x, which re-casts every weight on every call), for ~15-45 s of
  compilation on first use and again for the first batch of one; eager oneDNN bf16 when
  no C++ compiler is installed. onnxruntime has no bf16 CPU convolutions;
* int8 -> onnxruntime static quantisation (QLinearConv, per-channel weights), calibrated
  on the caller's images: ~2.9x our onnxruntime fp32 path in interleaved runs. PyTorch's
  FX int8 (x86 backend) took ~90 s to prepare and ran at roughly half onnxruntime int8's
  speed; PT2E/X86InductorQuantizer is not in this torch build (it moved to torchao).

Figures other than the interleaved ones were taken while other jobs shared the two
cores; ``benchmarks/bench_inference.py`` reproduces the comparison with the baselines.
Whatever the backend, the result takes float32 NCHW images of any batch size (and any
spatial size the network accepts) and returns float32 logits.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from torch import nn

from .fold import fold_batchnorm
from .onnx_runtime import OnnxRuntimeModule, onnx_bytes, quantize_int8, require_onnxruntime
from .torch_backend import ChannelsLastModule, cpp_compiler_available

Precision = Literal["fp32", "bf16", "int8"]
Backend = Literal["auto", "onnxruntime", "torch"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")


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
        precision: ``fp32`` (logits match the eager model to ~1e-6), ``bf16`` (~0.5%
            relative) or ``int8`` (post-training static quantisation).
        calibration_images: int8 only, required: preprocessed float32 ``(N, 3, H, W)``
            images whose activation ranges set the quantisation scales.
        example_input_size: ``(C, H, W)`` used to trace the graph for ONNX; the result
            still accepts other batch and spatial sizes.
        backend: ``auto`` picks the measured fastest (above); ``torch`` forces eager
            oneDNN for fp32 and bf16 (no onnxruntime needed, no compilation wait);
            ``onnxruntime`` forces onnxruntime for fp32. int8 always runs in
            onnxruntime.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in ("auto", "onnxruntime", "torch"):
        raise ValueError(f"backend must be auto, onnxruntime or torch, got {backend!r}")
    if precision == "int8":
        images = _check_calibration(calibration_images, example_input_size)
        require_onnxruntime()
        float_graph = onnx_bytes(fold_batchnorm(model), example_input_size)
        return OnnxRuntimeModule(quantize_int8(float_graph, images), precision="int8")
    folded = fold_batchnorm(model)
    if precision == "bf16":
        return ChannelsLastModule(folded, torch.bfloat16, compile_model=backend != "torch" and cpp_compiler_available())
    use_onnxruntime = backend == "onnxruntime" or (backend == "auto" and _onnxruntime_available())
    if use_onnxruntime:
        require_onnxruntime()
        return OnnxRuntimeModule(onnx_bytes(folded, example_input_size), precision="fp32")
    return ChannelsLastModule(folded, torch.float32, compile_model=False)
