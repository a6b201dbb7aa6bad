"""ONNX and TorchScript export: parity with PyTorch at two batch sizes, the dynamic batch
axis, the preprocessing sidecar, and the ``res2net export`` command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import pytest
import torch
from test_inference import SMALL, eager, random_model, relative_error, save_training_checkpoint

from res2net.cli.inference import add_export_parser
from res2net.inference.export import (
    export_onnx,
    export_torchscript,
    run_export,
    sidecar_path,
    verify_onnx,
    verify_torchscript,
)
from res2net.inference.session import PreprocessInfo

INFO = PreprocessInfo(SMALL, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.9, "bicubic", ["a", "b", "c"])


def test_onnx_export_parity_dynamic_batch_and_sidecar(tmp_path: Path) -> None:
    model = random_model("res2net_dla60", num_classes=3)
    path = export_onnx(model, tmp_path / "m.onnx", input_size=SMALL, preprocess=INFO)
    graph = onnx.load(str(path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value, "the batch axis must be dynamic"
    assert verify_onnx(path, model, batch_sizes=(1, 3)) < 1e-4
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "m.onnx.json"
    assert sidecar["input_size"] == [3, 64, 64] and sidecar["mean"] == [0.5, 0.5, 0.5]
    assert sidecar["std"] == [0.25, 0.25, 0.25] and sidecar["crop_pct"] == 0.9
    assert sidecar["interpolation"] == "bicubic" and sidecar["class_names"] == ["a", "b", "c"]
    assert sidecar["input_name"] == "input" and sidecar["output_name"] == "logits"


def test_verify_onnx_detects_a_different_model(tmp_path: Path) -> None:
    path = export_onnx(random_model("res2net50_26w_4s", seed=0), tmp_path / "m.onnx", input_size=SMALL)
    assert verify_onnx(path, random_model("res2net50_26w_4s", seed=1), input_size=SMALL) > 0.1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_round_trip(tmp_path: Path) -> None:
    model = random_model("res2net50_26w_4s", num_classes=3)
    path = export_torchscript(model, tmp_path / "m.pt", input_size=SMALL, preprocess=INFO)
    loaded = torch.jit.load(str(path))
    x = torch.randn(2, *SMALL)
    with torch.no_grad():
        assert relative_error(loaded(x), eager(model, x)) < 1e-4
    assert verify_torchscript(path, model) < 1e-4
    assert json.loads(sidecar_path(path).read_text())["format"] == "torchscript"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_export_command_prints_the_error_and_writes_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = random_model("res2net50_26w_4s", num_classes=3)
    checkpoint = save_training_checkpoint(tmp_path / "ckpt.pth", model, ["x", "y", "z"], 64)
    output = tmp_path / "out.onnx"
    args = parse(["export", "--model", "res2net50_26w_4s", "--checkpoint", str(checkpoint),
                  "--format", "onnx", "--output", str(output)])
    assert run_export(args) == 0
    printed = capsys.readouterr().out
    error = float(printed.split("batch sizes 1 and 3): ")[1].split()[0])
    assert error < 1e-4
    sidecar = json.loads(sidecar_path(output).read_text())
    assert sidecar["class_names"] == ["x", "y", "z"] and sidecar["input_size"] == [3, 64, 64]


def test_export_rejects_checkpoint_and_pretrained_together() -> None:
    with pytest.raises(SystemExit):
        parse(["export", "--model", "res2net50", "--checkpoint", "a.pth", "--pretrained", "--output", "x.onnx"])
