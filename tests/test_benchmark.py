"""`res2net benchmark --what train --json`: one JSON object with figures, ratios and the step's roofline."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from res2net import cli
from res2net.speed.contenders import OURS_TRAIN, TIMM_TRAIN, TIMM_TRAIN_MATCHED
from res2net.speed.roofline import training_gflop_per_image


def test_training_work_is_counted_forward_and_backward() -> None:
    """A convolution covering the whole image is one matrix product per image: 2*C*K*S*S FLOP forward,
    the same again for the weight gradient, none for the input (images need no gradient)."""
    size, classes = 8, 10
    model = nn.Sequential(nn.Conv2d(3, classes, kernel_size=size, bias=False), nn.Flatten())
    flop_per_image = 2 * (2 * 3 * classes * size * size)
    assert training_gflop_per_image(model, size, None, batch=3) == pytest.approx(flop_per_image / 1e9)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_train_benchmark_json_has_every_contender_ratio_and_share_of_peak(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["benchmark", "--what", "train", "--batch-size", "2", "--image-size", "32", "--rounds", "1", "--json"]
    threads = torch.get_num_threads()
    try:
        assert cli.main([*argv, "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(capsys.readouterr().out)
    assert report["host_memory"] == "allocator default"  # --retain-host-memory would change it for all
    for precision in ("fp32", "bf16"):
        summary = report["train"]["2"][precision]
        assert set(summary["img_per_s"]) == {TIMM_TRAIN, TIMM_TRAIN_MATCHED, OURS_TRAIN}
        assert summary["ratios"][TIMM_TRAIN] == 1.0
        ours = summary["img_per_s"][OURS_TRAIN]
        assert summary["ratios"][OURS_TRAIN] == pytest.approx(ours / summary["img_per_s"][TIMM_TRAIN], rel=1e-2)
        # res2net50 at 32 px: ~2 x 4.2 GMAC x (32/224)^2 forward, about three times that per training step.
        assert 0.3 < summary["gflop_per_image"] < 0.8
        share = summary["share_of_peak"][OURS_TRAIN]
        expected = ours * summary["gflop_per_image"] / summary["matmul_peak_gflops"]
        # reported to three decimals, from figures that are themselves rounded (img/s to three decimals, GFLOP
        # and peak to four significant digits): 1e-3 absolute, or 1e-3 relative where the share exceeds 1
        # (bf16 emulated on a CPU without bf16 instructions)
        assert share == pytest.approx(expected, abs=1e-3, rel=1e-3)
        assert 0 < share
