"""validate.py's numbers equal a hand computation over the same images."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch._dynamo.utils import counters

from res2net import validation
from res2net.config import Config, load_config
from res2net.cpu_training import compiler_available
from res2net.data import EncodedImage, ImageFolderDataset, build_eval_transform
from res2net.errors import DataError
from res2net.inference import optimize as optimize_module
from res2net.inference.calibration import sample_files
from res2net.inference.openvino_backend import OpenVinoModule
from res2net.inference.optimize import BackendFallbackWarning
from res2net.metrics import EvalResult
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


class Recording(torch.nn.Module):
    """Passes batches through and keeps the logits, so two runs can be compared image by image."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.logits: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.inner(images)
        self.logits.append(out.detach().float().cpu())
        return out


def predictions_of(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[EvalResult, torch.Tensor]:
    recorded: list[Recording] = []
    real_prepare = validation.prepare_model

    def recording_prepare(*a: object, **k: object) -> torch.nn.Module:
        recorded.append(Recording(real_prepare(*a, **k)))
        return recorded[-1]

    monkeypatch.setattr(validation, "prepare_model", recording_prepare)
    result = validate(load_config(args, purpose="validate"))
    return result, torch.cat(recorded[-1].logits).argmax(dim=1)


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "agreement"), [("fp32", 1.0), ("bf16", 0.98), ("int8", 0.98)])
def test_the_fast_path_agrees_with_eager_image_by_image(
    learned_run: tuple[Path, float], digits_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], precision: str, agreement: float,
) -> None:
    """On a model that has learned the digits, ``--precision`` predicts what eager fp32 predicts."""
    run_dir, _ = learned_run
    args = ["-c", str(DEMO_RECIPE), "--data_dir", str(digits_dir), "--image_resize", "16",
            "--ckpt_path", str(run_dir / "last.pth"), "--batch_size", "64"]
    eager, eager_top1 = predictions_of(args, monkeypatch)
    fast, fast_top1 = predictions_of([*args, "--precision", precision], monkeypatch)
    assert fast.num_samples == eager.num_samples == len(eager_top1) == 360
    assert eager.top1 >= 80.0
    same = float((fast_top1 == eager_top1).float().mean())
    assert same >= agreement, f"{precision}: {same:.1%} of images get eager fp32's top-1"
    assert abs(fast.top1 - eager.top1) <= 100.0 * (1.0 - agreement)
    if precision == "int8":
        assert f"int8 calibration: 32 images (drawn with seed 42 from the 1437) in the train split {digits_dir}/train" \
            in capsys.readouterr().out


def test_int8_calibration_never_uses_the_scored_images(digits_dir: Path, tmp_path: Path) -> None:
    """A seeded sample of the train split, or the folder given; never the validation images."""
    def cfg_of(*extra: str) -> Config:
        return load_config(["-c", str(DEMO_RECIPE), "--data_dir", str(digits_dir), *extra], purpose="validate")

    transform = build_eval_transform(image_size=16, crop_pct=1.0)
    drawn = validation.calibration_set(cfg_of(), transform)
    assert drawn.images.shape == (32, 3, 16, 16)
    assert f"train split {digits_dir}/train" in drawn.source
    again = validation.calibration_set(cfg_of(), transform)
    torch.testing.assert_close(drawn.images, again.images)
    other_seed = validation.calibration_set(cfg_of("--seed", "7"), transform)
    assert not torch.equal(drawn.images, other_seed.images)
    val_images = {EncodedImage.read(p).data for p, _ in ImageFolderDataset(digits_dir, "val").samples}
    train_files = ImageFolderDataset(digits_dir, "train").samples
    chosen = sample_files([p for p, _ in train_files], 32, seed=42)
    assert not val_images & {EncodedImage.read(p).data for p in chosen}
    assert len({label for p, label in train_files if p in set(chosen)}) > 5  # not one class

    folder = validation.calibration_set(cfg_of("--calibration_dir", str(digits_dir / "val" / "3"),
                                               "--calibration_images", "5"), transform)
    assert folder.images.shape[0] == 5 and str(digits_dir / "val" / "3") in folder.source
    with pytest.raises(DataError, match="--calibration_dir"):
        validation.calibration_set(cfg_of("--train_split", "missing"), transform)


@pytest.mark.parametrize("openvino", [True, False])
def test_validate_compiles_before_the_timed_loop(
    checkpoint: Path, tiny_digits_dir: Path, monkeypatch: pytest.MonkeyPatch, openvino: bool
) -> None:
    """img/s must not include compilation (OpenVINO's per shape, or inductor's 15-45 s when
    OpenVINO is missing): the batch's shape is compiled before evaluate starts, and evaluate
    compiles nothing."""
    if not openvino:
        monkeypatch.setattr(optimize_module, "openvino_available", lambda: False)
    compiled_around_evaluate: list[tuple[object, object]] = []
    real_evaluate = validation.evaluate

    def state(model: torch.nn.Module) -> object:
        inner = getattr(model, "inner", model)
        if isinstance(inner, OpenVinoModule):
            return sorted(inner._static) + sorted(inner._dynamic)
        return counters["stats"]["unique_graphs"]

    def recording_evaluate(model: torch.nn.Module, *args: object, **kwargs: object) -> EvalResult:
        before = state(model)
        result = real_evaluate(model, *args, **kwargs)
        compiled_around_evaluate.append((before, state(model)))
        return result

    monkeypatch.setattr(validation, "evaluate", recording_evaluate)
    args = ["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir), "--image_resize", "16",
            "--ckpt_path", str(checkpoint), "--batch_size", "10"]
    eager = validate(load_config(args, purpose="validate"))
    torch._dynamo.reset()  # graphs compiled by earlier tests for the same shapes would be reused
    graphs_before = counters["stats"]["unique_graphs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendFallbackWarning)
        bf16 = validate(load_config([*args, "--precision", "bf16"], purpose="validate"))
    assert bf16.num_samples == 30 and bf16.loss == pytest.approx(eager.loss, rel=0.05)
    at_start, at_end = compiled_around_evaluate[-1]
    assert at_end == at_start, "evaluate compiled inside the timed loop"
    if openvino:
        assert at_start == [(10, 3, 16, 16)]  # the loader's batch, compiled before the loop
    elif compiler_available():
        assert at_start > graphs_before, "bf16 was not compiled before the timed loop"
