"""The contenders: timm (the outside anchor) and ours, on the same weights.

Training: one plain step (forward, cross-entropy, backward, SGD) of timm's model and ours in
the same loop. Inference: timm eager (NCHW and channels_last) and onnxruntime on timm's own
ONNX export, as a user of those tools would run them, against our ``optimize_for_inference``
paths, so outputs can be compared as well as timed. timm is imported only here, when a
benchmark runs, with one clear error if it is missing (it is not a dependency of the package).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import load_config
from ..cpu_training import accelerate_cpu_training
from ..errors import UserError
from ..inference.onnx_runtime import make_session, onnx_bytes
from ..inference.openvino_backend import openvino_available
from ..inference.optimize import optimize_for_inference
from ..metrics import autocast_context
from ..models import build_model
from ..train.optim import build_optimizer
from ..train.step import StepRunner
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


TIMM_TRAIN = "timm, as its train.py runs it"
TIMM_TRAIN_MATCHED = "timm model in our loop"
OURS_TRAIN = "ours, as our train.py runs it"
OURS_TRAIN_COMPILED = "ours with compile: True"


def our_train_step(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, dtype: str | None, *, compiled: bool = False,
    accelerated: bool = False, cpu_kernels: ModuleType | None = None,
) -> Callable[[], None]:
    """Our Trainer's step: the recipe's optimizer (fused momentum SGD), StepRunner's numerics
    (loss in float32, the NaN guard's gradient-norm check); ``compiled`` wraps the model in
    torch.compile as ``compile: True`` does; ``accelerated`` runs the step on
    :func:`~res2net.cpu_training.accelerate_cpu_training`'s copy, with ``cpu_kernels`` (the
    fused BatchNorm kernels, or None), as our trainer does on a CPU."""
    cfg = load_config(["--opt", "momentum", "--lr", "0.01", "--momentum", "0.9", "--weight_decay", "1e-4"],
                      purpose="train")
    optimizer = build_optimizer(model, cfg)
    if accelerated:
        model = accelerate_cpu_training(model, kernels=cpu_kernels)
    forward = torch.compile(model) if compiled else model
    runner = StepRunner(forward, optimizer, torch.amp.GradScaler(images.device.type, enabled=False),
                        device=images.device, amp_dtype=dtype, loss_kind="CE", label_smoothing=0.0,
                        accumulation_steps=1, clip_norm=None)
    model.train()

    def step() -> None:
        runner.forward_backward(images, targets)
        runner.optimizer_step()

    return step


def train_step_contenders(
    model_name: str, timm_name: str, batch: int, size: int, dtype: str | None, device: str = "cpu",
    compiled: bool = False, cpu_kernels: ModuleType | None = None,
) -> Contenders:
    """One training step three ways, same weights and batch:

    - timm as its ``train.py`` runs it: its optimizer factory (momentum SGD, no decay on
      norms and biases, PyTorch's default kernels) on NCHW tensors (``--channels-last`` is off
      by default), under autocast;
    - timm's model in our loop (channels_last, our optimizer and step): the model alone;
    - ours as our ``train.py`` runs it: channels_last, fused momentum SGD, StepRunner, and on a
      CPU the training copy of :mod:`res2net.cpu_training` with ``cpu_kernels``;
    - with ``compiled``, ours again under ``torch.compile`` (its compilation is timed separately).
    """
    timm = require_timm()
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, num_classes=1000).to(device)
    matched = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    ours = build_model(model_name)
    ours.load_state_dict(reference.state_dict())
    ours = ours.to(device, memory_format=torch.channels_last)
    images = torch.randn(batch, 3, size, size, device=device)
    images_cl = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 1000, (batch,), device=device)
    timm_optimizer = importlib.import_module("timm.optim").create_optimizer_v2(
        reference, "momentum", lr=0.01, weight_decay=1e-4, momentum=0.9
    )
    reference.train()

    def timm_step() -> None:
        with autocast_context(images.device, dtype):
            loss = F.cross_entropy(reference(images), targets)
        loss.backward()
        timm_optimizer.step()
        timm_optimizer.zero_grad(set_to_none=True)

    contenders = {
        TIMM_TRAIN: timm_step,
        TIMM_TRAIN_MATCHED: our_train_step(matched, images_cl, targets, dtype),
        OURS_TRAIN: our_train_step(ours, images_cl, targets, dtype, accelerated=device == "cpu",
                                    cpu_kernels=cpu_kernels),
    }
    if compiled:
        twin = copy.deepcopy(ours)
        contenders[OURS_TRAIN_COMPILED] = our_train_step(twin, images_cl, targets, dtype, compiled=True)
    return contenders


TIMM_NCHW = "timm eager fp32 NCHW"
TIMM_CHANNELS_LAST = "timm eager fp32 channels_last"
TIMM_ONNXRUNTIME = "onnxruntime fp32 (timm's ONNX export)"
OPENVINO = "OpenVINO {} (timm's ONNX export)"
OURS = "ours {} (optimize_for_inference)"


def openvino_reference(graph: bytes, precision: str, calibration_images: torch.Tensor) -> Callable[[torch.Tensor], Any]:
    """OpenVINO as its users run it: the ONNX file, the LATENCY hint, the precision hint, and for
    int8 NNCF's default post-training quantisation on the same calibration images as ours."""
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(graph)
    if precision == "int8":
        images = calibration_images.numpy()
        nncf.set_log_level(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bar
            model = nncf.quantize(model, nncf.Dataset([images[i : i + 1] for i in range(len(images))]),
                                  subset_size=len(images))
    hint = "bf16" if precision == "bf16" else "f32"
    request = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint})
    infer = request.create_infer_request()
    return lambda array: infer.infer({0: array})[0]


def inference_contenders(
    model_name: str, timm_name: str, batch_size: int, image_size: int, calibration_images: torch.Tensor
) -> Contenders:
    """Callables that each classify the same random batch once: timm eager, onnxruntime and
    OpenVINO on timm's own export, and our ``optimize_for_inference`` at every precision."""
    timm = require_timm()
    input_size = (3, image_size, image_size)
    timm_model = timm.create_model(timm_name, pretrained=False).eval()
    randomise_batchnorm(timm_model)
    timm_cl = copy.deepcopy(timm_model).to(memory_format=torch.channels_last)
    ours = build_model(model_name)
    ours.load_state_dict(timm_model.state_dict())
    ours.eval()
    graph = onnx_bytes(timm_model, input_size)
    session = make_session(graph)
    batch = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(0))
    batch_cl = batch.contiguous(memory_format=torch.channels_last)
    array = batch.numpy()

    def timm_nchw() -> torch.Tensor:
        with torch.inference_mode():
            return timm_model(batch)

    def timm_channels_last() -> torch.Tensor:
        with torch.inference_mode():
            return timm_cl(batch_cl)

    contenders: Contenders = {
        TIMM_NCHW: timm_nchw,
        TIMM_CHANNELS_LAST: timm_channels_last,
        TIMM_ONNXRUNTIME: lambda: torch.from_numpy(session.run(None, {"input": array})[0]),
    }
    if openvino_available():
        for precision in ("fp32", "bf16", "int8"):
            run = openvino_reference(graph, precision, calibration_images)
            contenders[OPENVINO.format(precision)] = (lambda r: lambda: torch.from_numpy(r(array).copy()))(run)
    for precision in ("fp32", "bf16", "int8"):
        fast = optimize_for_inference(ours, precision, calibration_images=calibration_images,  # type: ignore[arg-type]
                                      example_input_size=input_size)
        contenders[OURS.format(precision)] = (lambda f: lambda: f(batch))(fast)
    return contenders
