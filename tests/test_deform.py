"""Deformable convolution stages: zero offsets reproduce the plain block, offsets move samples,
plain checkpoints load into DCN models, and the parameter names are mmcv's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from checkpoint_helpers import randomise_, tiny_res2net

import res2net
from res2net.models.deform import DeformableConv2d

DCN = (False, True, True, True)


@pytest.mark.parametrize("layout", [{}, {"stem_type": "deep", "shortcut_type": "avgpool"}], ids=["resnet", "v1b"])
def test_zero_offsets_equal_the_plain_network(layout: dict[str, str]) -> None:
    torch.manual_seed(0)
    plain = randomise_(tiny_res2net(**layout))
    deformable = tiny_res2net(**layout, dcn_stages=DCN).eval()
    result = deformable.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".conv_offset." in k for k in result.missing_keys)
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        expected, actual = plain(x), deformable(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


def test_offsets_change_the_output_and_get_gradients() -> None:
    torch.manual_seed(0)
    conv = DeformableConv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 9, 9)
    reference = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    torch.testing.assert_close(conv(x), reference, rtol=1e-5, atol=1e-5)
    conv(x).square().sum().backward()
    assert conv.conv_offset.weight.grad is not None and conv.conv_offset.weight.grad.abs().sum() > 0
    with torch.no_grad():
        conv.conv_offset.bias.fill_(0.5)  # every tap half a pixel down and right
    assert not torch.allclose(conv(x), reference, atol=1e-3)


def test_dcn_stages_use_mmcv_names_and_only_the_chosen_stages() -> None:
    model = tiny_res2net(dcn_stages=(False, False, True, True))
    names = model.state_dict().keys()
    assert "layer3.0.convs.0.conv_offset.weight" in names and "layer3.0.convs.0.conv_offset.bias" in names
    assert "layer3.0.convs.0.weight" in names
    assert not any(k.startswith(("layer1.", "layer2.")) and "conv_offset" in k for k in names)
    with pytest.raises(ValueError, match="one flag per stage"):
        tiny_res2net(dcn_stages=(True, True))


def test_plain_checkpoint_loads_into_a_dcn_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = randomise_(res2net.create_model("res2net50_v1b", num_classes=10))
    path = tmp_path / "plain.pth"
    torch.save(plain.state_dict(), path)
    deformable = res2net.create_model("res2net50_v1b", checkpoint_path=path, dcn_stages=DCN).eval()
    offsets = [m.conv_offset for m in deformable.modules() if isinstance(m, DeformableConv2d)]
    assert len(offsets) == 3 * (4 + 6 + 3)
    assert all(not o.weight.any() and not o.bias.any() for o in offsets)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deformable(x), plain(x), rtol=1e-4, atol=1e-4)
