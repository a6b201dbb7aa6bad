"""The contenders: timm (the outside anchor) and ours, on the same weights.

Training: one plain step (forward, cross-entropy, backward, SGD) of timm's model and ours in
the same loop. Inference: timm eager (NCHW and channels_last) and onnxruntime on timm's own
ONNX export, as a user of those tools would run them, against our ``optimize_for_inference``
paths, so outputs can be compared as well as timed. timm is imported only here, when a
benchmark runs, with one clear error if it is missing (it is not a dependency of the package).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..evaluate import autocast_context
from ..inference.onnx_runtime import make_session, onnx_bytes
from ..inference.optimize import optimize_for_inference
from ..models import build_model
from .timing import Contenders


def require_timm() -> ModuleType:
    """timm, the reference every benchmark compares against."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise UserError(
            "benchmarks compare against timm, which is not installed: pip install 'res2net[bench]'"
        ) from None


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Trained-like BatchNorm statistics, so both sides compute on realistic values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def train_step(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, dtype: str | None) -> Callable[[], None]:
    """One plain training step (forward, cross-entropy, backward, SGD) as a benchmark callable."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
    model.train()

    def step() -> None:
        with autocast_context(images.device, dtype):
            loss = F.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def train_step_contenders(
    model_name: str, timm_name: str, batch: int, size: int, dtype: str | None, device: str = "cpu"
) -> Contenders:
    """Our model and timm's, same weights, same loop, channels_last inputs and weights."""
    timm = require_timm()
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, num_classes=1000)
    ours = build_model(model_name)
    ours.load_state_dict(reference.state_dict())
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,), device=device)

    def prepared(model: nn.Module) -> nn.Module:
        return model.to(device, memory_format=torch.channels_last)

    return {
        f"timm {timm_name}": train_step(prepared(reference), images, targets, dtype),
        f"ours {model_name}": train_step(prepared(ours), images, targets, dtype),
    }




TIMM_NCHW = "timm eager fp32 NCHW"
TIMM_CHANNELS_LAST = "timm eager fp32 channels_last"
TIMM_ONNXRUNTIME = "onnxruntime, timm's ONNX export"


def inference_contenders(
    model_name: str, timm_name: str, batch_size: int, image_size: int, calibration_images: torch.Tensor
) -> Contenders:
    """Callables that each classify the same random batch once."""
    timm = require_timm()

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
