"""NarrowBatchNorm2d: the NCHW detour for narrow channels-last maps changes no number.

The detour is what runs where the fused kernels of ``fused_norm`` cannot be built, so every test
here turns those off."""

from __future__ import annotations

import pytest
import torch
from autograd_calls import record_calls
from torch import nn

from res2net.models import fused_norm, narrow_norm
from res2net.models.blocks import Bottle2neck
from res2net.models.narrow_norm import NarrowBatchNorm2d

CHANNELS_LAST = torch.channels_last


@pytest.fixture(autouse=True)
def without_fused_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_norm, "fused_kernels", lambda: None)


@pytest.fixture
def detours(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the input shape of every call that takes the detour."""
    return record_calls(monkeypatch, narrow_norm._BatchNormViaNCHW)


def twin_norms(channels: int, momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, NarrowBatchNorm2d]:
    reference = nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    ours = NarrowBatchNorm2d(channels, momentum=momentum)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_detour_matches_batchnorm_in_outputs_statistics_and_gradients(
    dtype: torch.dtype, momentum: float | None, relu: bool, detours: list[tuple[int, ...]]
) -> None:
    torch.manual_seed(0)
    reference, ours = twin_norms(26, momentum)
    source = (torch.randn(3, 26, 28, 28) * 2 + 1).to(dtype).contiguous(memory_format=CHANNELS_LAST)
    upstream = torch.randn(3, 26, 28, 28).to(dtype).contiguous(memory_format=CHANNELS_LAST)
    results = []
    runs = ((reference, lambda x: torch.relu(reference(x)) if relu else reference(x)),
            (ours, lambda x: ours(x, relu=relu)))
    for norm, run in runs:
        x = source.clone().requires_grad_(True)
        for _ in range(2):  # two batches: the running statistics and momentum=None's count move twice
            out = run(x)
        out.backward(upstream)
        results.append((out, x.grad, norm.weight.grad, norm.bias.grad))
    assert detours == [(3, 26, 28, 28)] * 2
    (out_ref, gx_ref, gw_ref, gb_ref), (out, gx, gw, gb) = results
    if relu:  # the ReLU's mask must matter to the gradients
        assert (out_ref == 0).float().mean() > 0.2
    assert out.dtype == out_ref.dtype == dtype and gx.dtype == dtype
    assert out.is_contiguous(memory_format=CHANNELS_LAST) and gx.is_contiguous(memory_format=CHANNELS_LAST)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(out, out_ref, **tolerance)
    torch.testing.assert_close(gx, gx_ref, **tolerance)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(gb, gb_ref, rtol=1e-4, atol=1e-3)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert int(ours.num_batches_tracked) == 2


def test_detour_only_for_narrow_channels_last_training_maps(detours: list[tuple[int, ...]]) -> None:
    narrow = NarrowBatchNorm2d(26)
    big_map = torch.randn(2, 26, 28, 28)
    narrow(big_map)  # NCHW input already gets the fast kernel
    narrow(torch.randn(2, 26, 16, 16).contiguous(memory_format=CHANNELS_LAST))  # small map
    NarrowBatchNorm2d(32)(torch.randn(2, 32, 28, 28).contiguous(memory_format=CHANNELS_LAST))  # whole vectors
    NarrowBatchNorm2d(104)(torch.randn(2, 104, 28, 28).contiguous(memory_format=CHANNELS_LAST))  # wide enough
    with torch.no_grad():
        narrow(big_map.contiguous(memory_format=CHANNELS_LAST))
    narrow.eval()
    narrow(big_map.contiguous(memory_format=CHANNELS_LAST))
    assert detours == []
    narrow.train()
    narrow(big_map.contiguous(memory_format=CHANNELS_LAST))
    assert detours == [(2, 26, 28, 28)]


def test_res2net_block_trains_the_same_with_and_without_the_detour(
    detours: list[tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    block = Bottle2neck(64, 26, 64, scale=4).to(memory_format=CHANNELS_LAST)
    assert all(isinstance(norm, NarrowBatchNorm2d) for norm in block.bns)
    x = torch.randn(2, 64, 28, 28).contiguous(memory_format=CHANNELS_LAST)

    def gradients() -> dict[str, torch.Tensor]:
        block.zero_grad()
        block(x).square().mean().backward()
        return {name: param.grad.clone() for name, param in block.named_parameters() if param.grad is not None}

    with_detour = gradients()
    assert len(detours) == 3  # the three chained 26-channel groups
    monkeypatch.setattr(NarrowBatchNorm2d, "max_channels", 0)
    without = gradients()
    assert len(detours) == 3
    assert with_detour.keys() == without.keys() and len(with_detour) == len(list(block.parameters()))
    for name, grad in with_detour.items():
        torch.testing.assert_close(grad, without[name], rtol=1e-4, atol=1e-6, msg=name)


def test_relu_without_the_detour_is_applied_too(detours: list[tuple[int, ...]]) -> None:
    reference, ours = twin_norms(26)
    x = torch.randn(2, 26, 28, 28)  # NCHW: no detour
    torch.testing.assert_close(ours(x, relu=True), torch.relu(reference(x)))
    assert detours == []


def test_block_traces_with_fx_in_training_mode(detours: list[tuple[int, ...]]) -> None:
    """A tracer that keeps convolutions and norms as leaves (as the BatchNorm-folding one does)
    hands the block Proxies: they must not reach the detour's shape checks, and the traced
    graph, calling the norm and then the block's ReLU, must compute what the block does."""

    class LeafTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
            return isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(m, module_qualified_name)

    torch.manual_seed(0)
    block = Bottle2neck(64, 26, 64, scale=4).to(memory_format=CHANNELS_LAST)
    traced = torch.fx.GraphModule(block, LeafTracer().trace(block, concrete_args={"shortcut": None}))
    x = torch.randn(2, 64, 28, 28).contiguous(memory_format=CHANNELS_LAST)
    eager_out = block(x)
    traced_out = traced(x)  # the same modules: the running statistics move once more, nothing else
    assert len(detours) == 6
    torch.testing.assert_close(traced_out, eager_out, rtol=1e-5, atol=1e-5)
