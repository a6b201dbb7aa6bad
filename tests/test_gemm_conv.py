"""GemmConv1x1 (res2net.cpu_training): its GEMM training path computes what ``nn.Conv2d`` computes,
forward and backward, and is taken exactly where it is meant to be."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from res2net.cpu_training import GemmConv1x1, accelerate_cpu_training, gemm_conv
from res2net.models import build_model


class _CallRecorder(TorchFunctionMode):
    """How often a forward calls each torch function."""

    def __init__(self) -> None:
        super().__init__()
        self.called: Counter[Callable[..., Any]] = Counter()

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.called[func] += 1
        return func(*args, **(kwargs or {}))


def _pair(stride: int, bias: bool) -> tuple[GemmConv1x1, nn.Conv2d]:
    torch.manual_seed(0)
    reference = nn.Conv2d(24, 40, 1, stride=stride, bias=bias)
    ours = accelerate_cpu_training(nn.Sequential(reference), kernels=None)[0]
    assert isinstance(ours, GemmConv1x1) and ours.weight is reference.weight
    return ours, reference


def _forward_backward(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.detach().clone().requires_grad_()
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out, [g for g in grads if g is not None]


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("size", [1, 5, 8])
def test_training_path_matches_conv2d(channels_last: bool, stride: int, bias: bool, size: int) -> None:
    ours, reference = _pair(stride, bias)
    x = torch.randn(3, 24, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    recorder = _CallRecorder()
    with recorder:
        out, grads = _forward_backward(ours, x)
    # A 1x1 map is contiguous in both layouts, so it takes the channels-last product.
    assert (F.linear if x.is_contiguous(memory_format=torch.channels_last) else torch.matmul) in recorder.called
    assert F.conv2d not in recorder.called
    expected, expected_grads = _forward_backward(reference, x)
    assert out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or size == 1
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert len(grads) == len(expected_grads) == 2 + bias
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", [True, False], ids=["native bf16", "emulated bf16"])
def test_bf16_takes_the_gemm_only_where_the_cpu_multiplies_bf16(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AVX512-BF16/AMX torch emulates bf16 matrix products far below oneDNN's bf16 convolutions
    (bench_cpu_training.py: the training step slower), so the convolution runs; either way the dtype is autocast's."""
    monkeypatch.setattr(gemm_conv, "native_bf16_matmul", lambda: native)
    ours, reference = _pair(1, False)
    x = torch.randn(2, 24, 4, 4).contiguous(memory_format=torch.channels_last)
    recorder = _CallRecorder()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with recorder:
            out = ours(x)
        expected = reference(x)
    assert (F.linear in recorder.called) == native and (F.conv2d in recorder.called) != native
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("case", ["eval", "no_grad", "large_map", "switched_off"])
def test_convolution_is_kept_outside_small_cpu_training(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eval, inference and large maps run oneDNN's convolution itself: bit-identical to nn.Conv2d."""
    ours, reference = _pair(1, True)
    size = 17 if case == "large_map" else 4  # 17x17 = 289 positions, past the 256 limit
    if case == "eval":
        ours.eval()
    if case == "switched_off":
        monkeypatch.setattr(gemm_conv, "GEMM_MAX_POSITIONS", 0)
    x = torch.randn(2, 24, size, size)
    recorder = _CallRecorder()
    with recorder, torch.set_grad_enabled(case != "no_grad"):
        out = ours(x)
    assert F.conv2d in recorder.called and F.linear not in recorder.called and torch.matmul not in recorder.called
    assert torch.equal(out, reference(x))


@pytest.mark.parametrize("name", ["res2net50", "res2net50_v1b", "res2net_dla60"])
def test_a_networks_training_step_matches_the_convolution_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 32x32 (stages at 8x8 down to 1x1, all on the GEMM path) a training step gives the
    same loss and weight gradients either way: strided-conv shortcuts (res2net50), avgpool
    shortcuts (v1b) and DLA's roots and projections. In float64, because the two paths round
    differently and BatchNorm over a few 1x1 maps amplifies float32 rounding (up to ~1% of a
    gradient in DLA); float64 shows that they compute the same function."""

    def step(gemm_max_positions: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        monkeypatch.setattr(gemm_conv, "GEMM_MAX_POSITIONS", gemm_max_positions)
        torch.manual_seed(0)
        plain = build_model(name, num_classes=10).double().to(memory_format=torch.channels_last)
        model = accelerate_cpu_training(plain, kernels=None).train()
        x = torch.randn(4, 3, 32, 32, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
        recorder = _CallRecorder()
        with recorder:
            loss = F.cross_entropy(model(x), torch.arange(4))
        loss.backward()
        pointwise = sum(isinstance(m, GemmConv1x1) for m in model.modules())
        gemm_calls = recorder.called[F.linear] - 1  # the classifier is the one nn.Linear
        assert gemm_calls == (pointwise if gemm_max_positions else 0)
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, gemm_calls

    gemm_loss, gemm_grads, gemm_calls = step(gemm_conv.GEMM_MAX_POSITIONS)
    conv_loss, conv_grads, _ = step(0)
    assert gemm_calls > 0
    torch.testing.assert_close(gemm_loss, conv_loss, rtol=1e-12, atol=0.0)
    assert gemm_grads.keys() == conv_grads.keys()
    for name, grad in gemm_grads.items():
        reference = conv_grads[name]
        assert (grad - reference).norm() <= 1e-9 * reference.norm(), name
