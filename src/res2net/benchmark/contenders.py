"""Inference contenders for ``res2net benchmark`` and ``benchmarks/bench_inference.py``.

timm eager (NCHW and channels_last) and onnxruntime on timm's own ONNX export, as a user
of those tools would run them, against our ``optimize_for_inference`` paths, all on the
same weights so their outputs can be compared as well as timed.
"""

from __future__ import annotations

import copy

import torch

from ..benchmark import Contenders, randomise_batchnorm
from ..models import build_model
from .onnx_runtime import make_session, onnx_bytes
from .optimize import optimize_for_inference

TIMM_NCHW = "timm eager fp32 NCHW"
TIMM_CHANNELS_LAST = "timm eager fp32 channels_last"
TIMM_ONNXRUNTIME = "onnxruntime, timm's ONNX export"


def inference_contenders(
    model_name: str, timm_name: str, batch_size: int, image_size: int, calibration_images: torch.Tensor
) -> Contenders:
    """Callables that each classify the same random batch once."""
    import timm

    input_size = (3, image_size, image_size)
    timm_model = timm.create_model(timm_name, pretrained=False).eval()
    randomise_batchnorm(timm_model)
    timm_cl = copy.deepcopy(timm_model).to(memory_format=torch.channels_last)
    ours = build_model(model_name)
    ours.load_state_dict(timm_model.state_dict())
    ours.eval()
    session = make_session(onnx_bytes(timm_model, input_size))
    fast = {p: optimize_for_inference(ours, p, calibration_images=calibration_images) for p in ("fp32", "bf16", "int8")}
    batch = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(0))
    batch_cl = batch.contiguous(memory_format=torch.channels_last)
    array = batch.numpy()

    def timm_nchw() -> torch.Tensor:
        with torch.inference_mode():
            return timm_model(batch)

    def timm_channels_last() -> torch.Tensor:
        with torch.inference_mode():
            return timm_cl(batch_cl)

    def timm_onnxruntime() -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": array})[0])

    return {
        TIMM_NCHW: timm_nchw,
        TIMM_CHANNELS_LAST: timm_channels_last,
        TIMM_ONNXRUNTIME: timm_onnxruntime,
        "ours fp32 (optimize_for_inference)": lambda: fast["fp32"](batch),
        "ours bf16 (optimize_for_inference)": lambda: fast["bf16"](batch),
        "ours int8 (optimize_for_inference)": lambda: fast["int8"](batch),
    }
