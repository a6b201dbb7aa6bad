"""validate.py's numbers equal a hand computation over the same images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch._dynamo.utils import counters

from res2net import validation
from res2net.config import load_config
from res2net.data import ImageFolderDataset, build_eval_transform
from res2net.evaluate import EvalResult
from res2net.inference.torch_backend import cpp_compiler_available
from res2net.models import build_model
from res2net.validation import validate

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """res2net50 with random weights and BatchNorm statistics, so predictions spread over classes."""
    torch.manual_seed(1)
    model = build_model("res2net50", num_classes=10)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_file(model.state_dict(), path)
    return path


def hand_computed(checkpoint: Path, data_dir: Path) -> dict[str, float]:
    model = build_model("res2net50", num_classes=10)
    model.load_state_dict(load_file(checkpoint))
    model.eval()
    transform = build_eval_transform(image_size=16, crop_pct=1.0, interpolation="bilinear")
    dataset = ImageFolderDataset(data_dir, "val", transform=transform)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    targets = torch.tensor(dataset.targets)
    with torch.no_grad():
        logits = model(images)
    top5 = logits.topk(5, dim=1).indices
    return {
        "top1": 100.0 * int((top5[:, 0] == targets).sum()) / len(targets),
        "top5": 100.0 * int((top5 == targets[:, None]).any(dim=1).sum()) / len(targets),
        "loss": float(F.cross_entropy(logits, targets)),
        "num_samples": len(dataset),
        "per_class": [int(((top5[:, 0] == targets) & (targets == c)).sum()) for c in range(10)],
    }


def test_validate_equals_hand_computation(
    checkpoint: Path, tiny_digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "per_class.csv"
    cfg = load_config(["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir), "--image_resize", "16",
                       "--ckpt_path", str(checkpoint), "--per_class_csv", str(csv_path), "--batch_size", "7"],
                      purpose="validate")
    result = validate(cfg)
    expected = hand_computed(checkpoint, tiny_digits_dir)
    assert result.num_samples == expected["num_samples"] == 30
    assert result.top1 == pytest.approx(expected["top1"], abs=1e-9)
    assert result.top5 == pytest.approx(expected["top5"], abs=1e-9)
    assert result.loss == pytest.approx(expected["loss"], rel=1e-5)
    assert 0 < expected["top5"] < 100  # the check would be blind on a degenerate model

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"top1", "top5", "loss", "num_samples"} <= summary.keys()
    assert summary["num_samples"] == 30
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["correct"]) for row in rows] == expected["per_class"]
    assert [int(row["total"]) for row in rows] == [3] * 10


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_validate_with_the_fast_path_agrees_with_eager(checkpoint: Path, tiny_digits_dir: Path, precision: str) -> None:
    """``--precision`` runs optimize_for_inference (int8 calibrated on validation batches) over the same images."""
    args = ["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir), "--image_resize", "16",
            "--ckpt_path", str(checkpoint), "--batch_size", "8"]
    eager = validate(load_config(args, purpose="validate"))
    fast = validate(load_config([*args, "--precision", precision], purpose="validate"))
    assert fast.num_samples == eager.num_samples == 30
    tolerance = 1e-4 if precision == "fp32" else 0.05
    assert fast.loss == pytest.approx(eager.loss, rel=tolerance)
    if precision == "fp32":
        assert fast.per_class_correct == eager.per_class_correct


def test_validate_bf16_compiles_before_the_timed_loop(
    checkpoint: Path, tiny_digits_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """img/s must not include inductor's 15-45 s compilation: the graph exists before evaluate starts."""
    graphs_at_evaluate: list[int] = []
    real_evaluate = validation.evaluate

    def recording_evaluate(model: torch.nn.Module, *args: object, **kwargs: object) -> EvalResult:
        graphs_at_evaluate.append(counters["stats"]["unique_graphs"])
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(validation, "evaluate", recording_evaluate)
    args = ["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir), "--image_resize", "16",
            "--ckpt_path", str(checkpoint), "--batch_size", "8"]
    eager = validate(load_config(args, purpose="validate"))
    graphs_before = counters["stats"]["unique_graphs"]
    bf16 = validate(load_config([*args, "--precision", "bf16"], purpose="validate"))
    assert bf16.num_samples == 30 and bf16.loss == pytest.approx(eager.loss, rel=0.05)
    if cpp_compiler_available():
        assert graphs_at_evaluate[-1] > graphs_before, "bf16 was compiled inside the timed loop"
