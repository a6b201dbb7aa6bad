"""The fused CPU BatchNorm kernels: the same numbers as nn.BatchNorm2d (+ residual, + ReLU), taken
exactly where they apply, and a clear fallback where they cannot be built."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from autograd_calls import record_calls
from torch import nn

from res2net.models import build_model, fused_norm
from res2net.models.blocks import Bottle2neck
from res2net.models.fused_norm import TrainingBatchNorm2d

CHANNELS_LAST = torch.channels_last


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every call that runs the fused kernels."""
    return record_calls(monkeypatch, fused_norm._FusedBatchNorm)


def test_the_kernels_build_on_this_machine() -> None:
    assert fused_norm.fused_kernels() is not None


def channels_last(shape: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(shape) * scale + shift).to(dtype).contiguous(memory_format=CHANNELS_LAST)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("relu", "with_residual"), [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize(("channels", "momentum"), [(26, 0.1), (64, None), (3, 0.1)])
def test_matches_batchnorm_in_outputs_statistics_and_gradients(
    dtype: torch.dtype, relu: bool, with_residual: bool, channels: int, momentum: float | None,
    fused_calls: list[tuple[int, ...]],
) -> None:
    torch.manual_seed(0)
    shape = (3, channels, 5, 7)  # 105 rows: not a whole number of 26-channel tiles (8 rows), so the tail runs
    reference = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    ours = TrainingBatchNorm2d(channels, momentum=momentum)
    ours.load_state_dict(reference.state_dict())
    source = channels_last(shape, dtype, scale=2.0, shift=30.0)  # an offset mean tests the one-pass variance
    residual_source = channels_last(shape, dtype)
    upstream = channels_last(shape, dtype)
    if relu:  # ReLU's gradient at its kink is a matter of rounding: send none through pre-activations near 0
        exact = F.batch_norm(source.double(), None, None, reference.weight.double(), reference.bias.double(), True,
                             eps=reference.eps)
        exact = exact + residual_source.double() if with_residual else exact
        upstream = upstream.masked_fill(exact.abs() < 0.05, 0.0)

    def run_reference(x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        out = reference(x)
        out = out + residual if residual is not None else out
        return F.relu(out) if relu else out

    def run_ours(x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return ours(x, relu=relu, residual=residual)

    results = []
    for norm, run in ((reference, run_reference), (ours, run_ours)):
        x = source.clone().requires_grad_(True)
        residual = residual_source.clone().requires_grad_(True) if with_residual else None
        for _ in range(2):  # two batches: the running statistics and momentum=None's count move twice
            out = run(x, residual)
        out.backward(upstream)
        results.append((out, x.grad, None if residual is None else residual.grad, norm.weight.grad, norm.bias.grad))
    assert fused_calls == [shape] * 2
    (out_ref, gx_ref, gr_ref, gw_ref, gb_ref), (out, gx, gr, gw, gb) = results
    if relu:  # the ReLU's mask must matter to the gradients
        assert (out_ref == 0).float().mean() > 0.2
    assert out.dtype == dtype and gx.dtype == dtype
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and gx.is_contiguous(memory_format=CHANNELS_LAST)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1.6e-2}
    torch.testing.assert_close(out, out_ref, **tolerance)
    torch.testing.assert_close(gx, gx_ref, **tolerance)
    if with_residual:
        torch.testing.assert_close(gr, gr_ref, **tolerance)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb, gb_ref, rtol=1e-4, atol=1e-4)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert int(ours.num_batches_tracked) == 2


def test_fused_only_for_channels_last_training_maps(fused_calls: list[tuple[int, ...]]) -> None:
    norm = TrainingBatchNorm2d(8)
    planar = torch.randn(2, 8, 6, 6)
    norm(planar)  # NCHW: PyTorch's kernel is fine there
    TrainingBatchNorm2d(8).double()(planar.double().contiguous(memory_format=CHANNELS_LAST))  # not float32/bf16
    residual = torch.randn(2, 8, 6, 6)  # NCHW residual with a channels-last input: not fused either
    out = norm(planar.contiguous(memory_format=CHANNELS_LAST), relu=True, residual=residual)
    torch.testing.assert_close(out, F.relu(F.batch_norm(planar, None, None, norm.weight, norm.bias, True) + residual))
    norm.eval()
    norm(planar.contiguous(memory_format=CHANNELS_LAST))
    assert fused_calls == []
    norm.train()
    with torch.no_grad():  # the statistics still update, as they do in PyTorch's kernel
        norm(planar.contiguous(memory_format=CHANNELS_LAST))
    assert fused_calls == [(2, 8, 6, 6)]


def test_non_finite_input_reaches_the_output() -> None:
    """The trainer's NaN guard looks at the loss: a NaN in the map must not be normalised away."""
    x = channels_last((2, 16, 4, 4), torch.float32)
    x[0, 3, 1, 1] = float("nan")
    out = TrainingBatchNorm2d(16)(x)
    assert out[:, 3].isnan().all() and not out[:, 2].isnan().any()


def test_res2net_trains_the_same_with_and_without_the_kernels(
    fused_calls: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole res2net50 training step (stem, every block's groups, the fused residual + ReLU, the
    shortcut projections): in fp32 the same gradients and running statistics either way; under
    bf16 autocast, where every layer rounds, gradients as close to the fp32 ones as PyTorch's own
    kernels get them."""
    torch.manual_seed(0)
    model = build_model("res2net50", num_classes=10).to(memory_format=CHANNELS_LAST).train()
    images = torch.randn(4, 3, 64, 64).contiguous(memory_format=CHANNELS_LAST)
    targets = torch.randint(0, 10, (4,))
    initial = {name: value.clone() for name, value in model.state_dict().items()}

    def step(bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All parameters' gradients as one vector, and the state after the step."""
        model.load_state_dict(initial)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images).float(), targets)
        loss.backward()
        grads = torch.cat([param.grad.flatten() for param in model.parameters()])
        return grads, {name: value.clone() for name, value in model.state_dict().items()}

    fused_fp32, fused_state = step(bf16=False)
    fused_bf16, _ = step(bf16=True)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(fused_calls) == 2 * norms
    monkeypatch.setattr(fused_norm, "fused_kernels", lambda: None)
    plain_fp32, plain_state = step(bf16=False)
    plain_bf16, _ = step(bf16=True)
    assert len(fused_calls) == 2 * norms
    torch.testing.assert_close(fused_fp32, plain_fp32, rtol=1e-3, atol=1e-5)
    for name, value in plain_state.items():
        torch.testing.assert_close(fused_state[name], value, rtol=1e-4, atol=1e-5, msg=name)

    def error(grads: torch.Tensor) -> float:
        return float((grads - plain_fp32).norm() / plain_fp32.norm())

    assert 0 < error(fused_bf16) <= 1.1 * error(plain_bf16)


def test_block_with_stochastic_depth_keeps_the_unfused_residual(fused_calls: list[tuple[int, ...]]) -> None:
    block = Bottle2neck(64, 26, 64, scale=4, drop_path_rate=0.5).to(memory_format=CHANNELS_LAST)
    block(channels_last((2, 64, 8, 8), torch.float32))
    assert len(fused_calls) == 5  # bn1, the three group norms and bn3, but bn3 without the residual


def test_unbuildable_kernels_warn_once_and_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from torch.utils import cpp_extension

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with caplog.at_level(logging.WARNING, logger="res2net.models.fused_norm"):
        assert fused_norm.fused_kernels.__wrapped__() is None
    assert ("fused CPU BatchNorm kernels unavailable (RuntimeError: Ninja is required to load C++ extensions); "
            "training uses PyTorch's kernels") in caplog.text

    monkeypatch.setenv(fused_norm.SWITCH, "0")
    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: pytest.fail("switched off: must not build"))
    assert fused_norm.fused_kernels.__wrapped__() is None
