"""``res2net convert``: any supported checkpoint -> safetensors with our names."""

from __future__ import annotations

import argparse
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import randomise_, relative_error, tiny_res2net
from safetensors import safe_open

from res2net import create_model
from res2net.checkpoint import CheckpointFormat, detect_format
from res2net.cli.convert import add_convert_parser
from res2net.convert import convert, run_convert
from res2net.errors import CheckpointError
from res2net.models import register_model

FIXTURES = Path(__file__).parent / "fixtures" / "mindcv"
MINDCV_TINY = "convert_mindcv_tiny"
TINY = "convert_tiny"
register_model(MINDCV_TINY, "res2net", {"layers": (1, 1, 1, 1), "base_width": 8, "scale": 4}, "test")
register_model(TINY, "res2net", {"layers": (1, 1, 1, 1), "base_width": 4, "scale": 2}, "test")


@pytest.fixture
def mindcv_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "res2net_train.ckpt"
    path.write_bytes(lzma.decompress((FIXTURES / "res2net_train.ckpt.xz").read_bytes()))
    return path


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="res2net")
    add_convert_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_mindcv_training_checkpoint_to_safetensors(
    tmp_path: Path, mindcv_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "out" / "converted.safetensors"
    assert run_convert(_cli(["convert", str(mindcv_ckpt), str(dst), "--model", MINDCV_TINY])) == 0
    assert "1001 classes" in capsys.readouterr().out
    assert detect_format(dst) is CheckpointFormat.SAFETENSORS

    with safe_open(str(dst), framework="pt") as f:
        keys = set(f.keys())
        assert f.metadata()["model"] == MINDCV_TINY
        assert f.get_tensor("fc.weight").shape == (1001, 2048)
    assert not any(k.startswith("moments.") or k.endswith(("gamma", "moving_mean")) for k in keys)
    assert keys == set(create_model(MINDCV_TINY, num_classes=1001).state_dict())

    reference = np.load(FIXTURES / "reference.npz")
    model = create_model(MINDCV_TINY, checkpoint_path=dst, num_classes=1001).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(reference["input"]))
    assert relative_error(logits, torch.from_numpy(reference["res2net_train_logits"])) < 1e-5


def test_ema_weights_converted_on_request(tmp_path: Path) -> None:
    live, ema = randomise_(tiny_res2net(), seed=5), randomise_(tiny_res2net(), seed=6)
    src = tmp_path / "last.pt"
    torch.save({"model": live.state_dict(), "model_ema": ema.state_dict(), "epoch": 3}, src)
    for use_ema, expected in ((False, live), (True, ema)):
        dst = tmp_path / f"ema_{use_ema}.safetensors"
        assert convert(src, dst, TINY, use_ema=use_ema) == 10
        model = create_model(TINY, checkpoint_path=dst, num_classes=10)
        assert torch.equal(model.layer2[0].bn3.running_mean, expected.layer2[0].bn3.running_mean)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path, mindcv_ckpt: Path) -> None:
    dst = tmp_path / "out" / "wrong.safetensors"
    with pytest.raises(CheckpointError, match="does not fit model convert_tiny") as err:
        convert(mindcv_ckpt, dst, TINY)
    assert str(mindcv_ckpt) in str(err.value)
    assert not dst.parent.exists() or not any(dst.parent.iterdir())
