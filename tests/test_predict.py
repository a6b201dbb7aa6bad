"""``res2net predict``: top-k names and sorted probabilities, corrupt-image handling, JSON
output and Grad-CAM PNGs. The model is a small-input (64x64) checkpoint so runs are fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_inference import random_model, save_training_checkpoint

from res2net.cli.inference import add_predict_parser
from res2net.inference.cam import grad_cam, overlay
from res2net.inference.predict import run_predict, top_k

NAMES = ["apple", "banana", "cherry", "date", "elderberry", "fig"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = random_model("res2net50_26w_4s", num_classes=len(NAMES))
    return save_training_checkpoint(tmp_path_factory.mktemp("ckpt") / "fruit.pth", model, NAMES, 64)


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    Image.new("RGB", (90, 70), (200, 40, 40)).save(folder / "red.png")
    Image.effect_noise((64, 80), 60).convert("RGB").save(folder / "nested" / "noise.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return folder


def predict(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_predict_parser(parser.add_subparsers())
    return run_predict(parser.parse_args(["predict", *argv]))


def test_top_k_is_sorted_and_named() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 5.0]])
    result = top_k(logits, ["a", "b", "c"], 2)
    assert [[p.label for p in row] for row in result] == [["b", "c"], ["c", "a"]]
    assert result[0][0].probability == pytest.approx(torch.softmax(logits[0], 0)[1].item())
    assert len(top_k(logits, ["a", "b", "c"], 10)[0]) == 3


def test_predict_prints_top_k_and_survives_a_corrupt_image(
    checkpoint: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = predict(["--model", "res2net50_26w_4s", "--checkpoint", str(checkpoint), str(images), "--topk", "3"])
    out, err = capsys.readouterr()
    assert status == 1, "a failed image makes the exit status 1"
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    blocks = out.strip().split("\n")
    headers = [line for line in blocks if line.endswith(":")]
    assert [Path(h[:-1]).name for h in headers] == ["noise.jpg", "red.png"]
    rows = [line.split() for line in blocks if not line.endswith(":")]
    assert len(rows) == 6
    for image_rows in (rows[:3], rows[3:]):
        probabilities = [float(r[0]) for r in image_rows]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(r[1] in NAMES for r in image_rows)


def test_predict_json_with_labels_file_and_cam(
    checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(n.upper() for n in NAMES) + "\n")
    (images / "broken.jpg").unlink()
    cam_dir = tmp_path / "cams"
    status = predict(["--model", "res2net50_26w_4s", "--checkpoint", str(checkpoint), "--labels", str(labels),
                      "--json", "--cam", str(cam_dir), "--topk", "6", str(images / "red.png"),
                      str(images / "nested" / "noise.jpg")])
    assert status == 0
    document = json.loads(capsys.readouterr().out)
    assert document["failed"] == []
    sizes = {"red.png": (90, 70), "noise.jpg": (64, 80)}
    for entry in document["results"]:
        probabilities = [p["probability"] for p in entry["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert {p["label"] for p in entry["predictions"]} == {n.upper() for n in NAMES}
        with Image.open(entry["cam"]) as cam:
            assert cam.format == "PNG" and cam.size == sizes[Path(entry["image"]).name]
            cam.load()


def test_grad_cam_highlights_the_evidence() -> None:
    """Two feature channels, one lit on the left half and one on the right; the class
    score reads only the right one. Grad-CAM must be zero on the left, peak on the right."""

    class TwoChannels(torch.nn.Module):
        feature_info = [type("Info", (), {"module": "stage"})()]

        def __init__(self) -> None:
            super().__init__()
            self.stage = torch.nn.Conv2d(2, 2, 1, bias=False)
            with torch.no_grad():
                self.stage.weight.copy_(torch.eye(2).view(2, 2, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.stage(x)[:, 1].sum(dim=(1, 2)).unsqueeze(1)

    x = torch.zeros(1, 2, 4, 4)
    x[:, 0, :, :2] = 1.0
    x[:, 1, :, 2:] = 1.0
    cam = grad_cam(TwoChannels(), x)
    assert cam.shape == (1, 4, 4)
    assert torch.all(cam[0, :, :2] == 0) and torch.allclose(cam[0, :, 2:], torch.ones(4, 2))
    picture = overlay(Image.new("RGB", (40, 20), (0, 0, 0)), cam[0], crop_pct=1.0)
    assert picture.size == (40, 20)
    pixels = picture.load()
    assert pixels[15, 10][2] > pixels[15, 10][0] and pixels[25, 10][0] > pixels[25, 10][2], "cold blue, hot red"
    assert pixels[5, 10] == (0, 0, 0), "outside the centre crop the image is untouched"


@pytest.mark.parametrize(("size", "stride"), [(32, 8), (64, 16), (128, 32), (224, 32)])
def test_grad_cam_reads_the_deepest_stage_that_still_has_a_map(size: int, stride: int) -> None:
    """The paper's last stage gives a 32-pixel digit one cell, a one-colour "map"; the deepest stage with at least
    MIN_CELLS cells a side is read instead."""
    from res2net import create_model

    torch.manual_seed(0)
    model = create_model("res2net50", num_classes=3)
    cam = grad_cam(model, torch.randn(1, 3, size, size))
    assert cam.shape == (1, size // stride, size // stride)
    assert cam.max() == 1 and cam.min() < 1, "a map with places, not one colour"
