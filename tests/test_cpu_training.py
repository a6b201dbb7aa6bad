"""res2net.cpu_training: the training copy shares the model's tensors and computes what the plain
model computes; the fused BatchNorm kernels match ``nn.BatchNorm2d`` (+ residual, + ReLU) in outputs,
gradients and running statistics, run exactly where they apply, and build only when asked.

Tests that compile the kernels need a C++ compiler; without one they say so and skip (CI has one)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from autograd_calls import record_calls
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from res2net.cpu_training import (
    FusedBatchNorm2d,
    FusedBottle2neck,
    KernelBuildError,
    accelerate_cpu_training,
    compiler_available,
    fused_norm,
    load_kernels,
)
from res2net.cpu_training import kernels as kernel_build
from res2net.models import build_model
from res2net.models.blocks import Bottle2neck

CHANNELS_LAST = torch.channels_last


@pytest.fixture(scope="module")
def fused_kernels() -> ModuleType:
    if not compiler_available():
        pytest.skip("needs a C++ compiler to build the kernels")
    built = load_kernels(build=True)
    assert built is not None
    return built


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every call that runs the fused kernels."""
    return record_calls(monkeypatch, fused_norm._FusedBatchNorm)


def channels_last(shape: tuple[int, ...], dtype: torch.dtype, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(shape) * scale + shift).to(dtype).contiguous(memory_format=CHANNELS_LAST)


def fused_twin(reference: nn.BatchNorm2d, kernels_module: ModuleType, relu: bool) -> FusedBatchNorm2d:
    """The fused module a training copy makes of ``reference`` (sharing its tensors)."""
    copy = accelerate_cpu_training(nn.Sequential(reference), kernels=kernels_module)[0]
    assert isinstance(copy, FusedBatchNorm2d) and copy.weight is reference.weight
    copy.relu = relu
    return copy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("relu", "with_residual"), [(False, False), (True, False), (True, True), (False, True)])
@pytest.mark.parametrize(("channels", "momentum"), [(26, 0.1), (64, None), (3, 0.1)])
def test_matches_batchnorm_in_outputs_statistics_and_gradients(
    dtype: torch.dtype, relu: bool, with_residual: bool, channels: int, momentum: float | None,
    fused_kernels: ModuleType, fused_calls: list[tuple[int, ...]],
) -> None:
    torch.manual_seed(0)
    shape = (3, channels, 5, 7)  # 105 rows: not a whole number of 26-channel tiles (8 rows), so the tail runs
    reference = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    twin = nn.BatchNorm2d(channels, momentum=momentum)
    twin.load_state_dict(reference.state_dict())
    ours = fused_twin(twin, fused_kernels, relu)
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

    results = []
    for norm, run in ((reference, run_reference), (ours, ours)):
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
    assert out._base is None  # an ordinary tensor, not a view: in-place operations after it are allowed
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1.6e-2}
    torch.testing.assert_close(out, out_ref, **tolerance)
    torch.testing.assert_close(gx, gx_ref, **tolerance)
    if with_residual:
        torch.testing.assert_close(gr, gr_ref, **tolerance)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb, gb_ref, rtol=1e-4, atol=1e-4)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert int(twin.num_batches_tracked) == 2


def test_an_in_place_relu_may_follow_the_fused_output(fused_kernels: ModuleType) -> None:
    """The v1b stem's shape (conv, BatchNorm, ReLU(inplace=True)): the fused output is an ordinary
    tensor, so the in-place ReLU neither fails nor corrupts the gradient."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
    fast = accelerate_cpu_training(plain, kernels=fused_kernels)
    x = channels_last((2, 3, 6, 6), torch.float32)
    plain(x).pow(2).sum().backward()
    expected = plain[0].weight.grad.clone()
    plain.zero_grad()
    fast(x).pow(2).sum().backward()
    torch.testing.assert_close(plain[0].weight.grad, expected, rtol=1e-5, atol=1e-5)


def test_fused_only_for_channels_last_training_maps(fused_kernels: ModuleType,
                                                    fused_calls: list[tuple[int, ...]]) -> None:
    norm = fused_twin(nn.BatchNorm2d(8), fused_kernels, relu=True)
    planar = torch.randn(2, 8, 6, 6)
    norm(planar)  # NCHW: PyTorch's kernel is fine there
    fused_twin(nn.BatchNorm2d(8).double(), fused_kernels, relu=False)(
        planar.double().contiguous(memory_format=CHANNELS_LAST))  # not float32/bf16
    residual = torch.randn(2, 8, 6, 6)  # NCHW residual with a channels-last input: not fused either
    out = norm(planar.contiguous(memory_format=CHANNELS_LAST), residual=residual)
    torch.testing.assert_close(out, F.relu(F.batch_norm(planar, None, None, norm.weight, norm.bias, True) + residual))
    norm.eval()
    norm(planar.contiguous(memory_format=CHANNELS_LAST))
    assert fused_calls == []
    norm.train()
    with torch.no_grad():  # the statistics still update, as they do in PyTorch's kernel
        norm(planar.contiguous(memory_format=CHANNELS_LAST))
    assert fused_calls == [(2, 8, 6, 6)]


def test_non_finite_input_reaches_the_output(fused_kernels: ModuleType) -> None:
    """The trainer's NaN guard looks at the loss: a NaN in the map must not be normalised away."""
    x = channels_last((2, 16, 4, 4), torch.float32)
    x[0, 3, 1, 1] = float("nan")
    out = fused_twin(nn.BatchNorm2d(16), fused_kernels, relu=False)(x)
    assert out[:, 3].isnan().all() and not out[:, 2].isnan().any()


def test_res2net_trains_the_same_with_and_without_the_kernels(
    fused_kernels: ModuleType, fused_calls: list[tuple[int, ...]]
) -> None:
    """A whole res2net50 training step (stem, every block's groups, the fused residual + ReLU, the
    shortcut projections): in fp32 the same gradients and running statistics either way; under
    bf16 autocast, where every layer rounds, gradients as close to the fp32 ones as PyTorch's own
    kernels get them."""
    torch.manual_seed(0)
    model = build_model("res2net50", num_classes=10).to(memory_format=CHANNELS_LAST).train()
    fast = accelerate_cpu_training(model, kernels=fused_kernels, gemm_1x1=False).train()
    images = torch.randn(4, 3, 64, 64).contiguous(memory_format=CHANNELS_LAST)
    targets = torch.randint(0, 10, (4,))
    initial = {name: value.clone() for name, value in model.state_dict().items()}

    def step(net: nn.Module, bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """All parameters' gradients as one vector, and the state after the step."""
        model.load_state_dict(initial)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(images).float(), targets)
        loss.backward()
        grads = torch.cat([param.grad.flatten() for param in model.parameters()])
        return grads, {name: value.clone() for name, value in model.state_dict().items()}

    fused_fp32, fused_state = step(fast, bf16=False)
    fused_bf16, _ = step(fast, bf16=True)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(fused_calls) == 2 * norms
    plain_fp32, plain_state = step(model, bf16=False)
    plain_bf16, _ = step(model, bf16=True)
    assert len(fused_calls) == 2 * norms
    torch.testing.assert_close(fused_fp32, plain_fp32, rtol=1e-3, atol=1e-5)
    for name, value in plain_state.items():
        torch.testing.assert_close(fused_state[name], value, rtol=1e-4, atol=1e-5, msg=name)

    def error(grads: torch.Tensor) -> float:
        return float((grads - plain_fp32).norm() / plain_fp32.norm())

    assert 0 < error(fused_bf16) <= 1.1 * error(plain_bf16)


def test_block_with_stochastic_depth_keeps_the_unfused_residual(fused_kernels: ModuleType,
                                                                fused_calls: list[tuple[int, ...]]) -> None:
    block = Bottle2neck(64, 26, 64, scale=4, drop_path_rate=0.5).to(memory_format=CHANNELS_LAST)
    fast = accelerate_cpu_training(block, kernels=fused_kernels)
    assert type(fast) is Bottle2neck and isinstance(fast.bn3, FusedBatchNorm2d) and not fast.bn3.relu
    fast(channels_last((2, 64, 8, 8), torch.float32))
    assert len(fused_calls) == 5  # bn1, the three group norms and bn3, but bn3 without the residual


def test_the_copy_shares_every_tensor_and_leaves_the_model_plain(fused_kernels: ModuleType) -> None:
    torch.manual_seed(0)
    model = build_model("res2net50_v1b", num_classes=5).to(memory_format=CHANNELS_LAST)
    kinds = [type(m) for m in model.modules()]
    fast = accelerate_cpu_training(model, kernels=fused_kernels)
    assert [type(m) for m in model.modules()] == kinds  # the model keeps its plain modules
    assert isinstance(fast.layer1[0], FusedBottle2neck) and isinstance(fast.layer1[0].bn1, FusedBatchNorm2d)
    assert list(fast.state_dict()) == list(model.state_dict())
    assert all(a is b for a, b in zip(fast.state_dict(keep_vars=True).values(),
                                      model.state_dict(keep_vars=True).values()))
    x = channels_last((2, 3, 32, 32), torch.float32)
    fast.train()
    fast(x).sum().backward()  # updates the shared running statistics and fills the shared gradients
    assert all(p.grad is not None for p in model.parameters())
    assert model.training and int(model.bn1.num_batches_tracked) == 1
    fast.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(fast(x), model(x))


def test_frozen_and_sync_norms_are_left_alone(fused_kernels: ModuleType) -> None:
    model = build_model("res2net50", num_classes=3, norm_layer=FrozenBatchNorm2d)
    fast = accelerate_cpu_training(model, kernels=fused_kernels)
    assert not any(isinstance(m, (FusedBatchNorm2d, FusedBottle2neck)) for m in fast.modules())


def test_kernels_build_only_when_asked_and_per_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache builds nothing unless asked; a build for other CPU flags is never found."""
    monkeypatch.setenv("RES2NET_HOME", str(tmp_path))
    monkeypatch.setattr(kernel_build, "_loaded", {})
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: pytest.fail("nobody asked for a build"))
    assert load_kernels(build=False) is None
    built_for_this_cpu = kernel_build.build_dir()
    monkeypatch.setattr(kernel_build, "_cpu_signature", lambda: b"flags : some other cpu")
    assert kernel_build.build_dir() != built_for_this_cpu


def test_an_unbuildable_build_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RES2NET_HOME", str(tmp_path))
    monkeypatch.setattr(kernel_build, "_loaded", {})
    from torch.utils import cpp_extension

    def no_ninja(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", no_ninja)
    monkeypatch.setattr(kernel_build, "compiler_available", lambda: True)
    with pytest.raises(KernelBuildError, match=r"cannot build the fused CPU kernels \(RuntimeError: Ninja is "
                                               r"required to load C\+\+ extensions\); use cpu_kernels: off"):
        load_kernels(build=True)
    monkeypatch.setattr(kernel_build, "compiler_available", lambda: False)
    with pytest.raises(KernelBuildError, match="needs a C\\+\\+ compiler"):
        load_kernels(build=True)
