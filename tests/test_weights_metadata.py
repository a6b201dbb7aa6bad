"""Weights travel with their metadata: every load reads the file once and attaches a
``pretrained_cfg``, and a MindCV 1001-row head names its rows alike in predict, serve and validate."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import randomise_, tiny_res2net
from PIL import Image
from safetensors.torch import save_file

from res2net import cli, create_model, register_model, register_weights
from res2net.checkpoint.training import TrainingCheckpoint, write_training_checkpoint
from res2net.config import load_config
from res2net.convert import convert
from res2net.inference import load_model
from res2net.models import imagenet_label_names
from res2net.serve.cli import add_serve_parser, build_runner
from res2net.validation import validate

FIXTURES = Path(__file__).parent / "fixtures" / "mindcv"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"
TINY = "metadata_tiny"
MINDCV_TINY = "metadata_mindcv_tiny"  # MindCV's Res2Net(Bottle2neck, [1, 1, 1, 1], base_width=8)
register_model(TINY, "res2net", {"layers": (1, 1, 1, 1), "base_width": 4, "scale": 2}, "test")
register_model(MINDCV_TINY, "res2net", {"layers": (1, 1, 1, 1), "base_width": 8, "scale": 4}, "test")


@pytest.fixture(scope="module")
def mindcv_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine MindCV training checkpoint with MindCV's 1001-row head."""
    path = tmp_path_factory.mktemp("mindcv") / "res2net_train.ckpt"
    path.write_bytes(lzma.decompress((FIXTURES / "res2net_train.ckpt.xz").read_bytes()))
    return path


class OpenCounter:
    """Counts how often Python opens one file (pathlib, open() and torch's file readers all go
    through io.open)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
        self.path = path.resolve()
        self.count = 0
        real_open = io.open

        def counting_open(file: object, *args: object, **kwargs: object) -> object:
            if isinstance(file, (str, Path)) and Path(file).resolve() == self.path:
                self.count += 1
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(io, "open", counting_open)
        monkeypatch.setattr("builtins.open", counting_open)


def _training_checkpoint(path: Path, class_names: list[str]) -> Path:
    model = randomise_(tiny_res2net(num_classes=len(class_names)), seed=3)
    config = load_config(["--image_resize", "48", "--crop_pct", "0.9", "--interpolation", "bicubic"],
                         purpose="train").to_dict()
    write_training_checkpoint(
        TrainingCheckpoint(
            model_name=TINY, model=model.state_dict(), optimizer={}, scaler={}, schedule={}, epoch=1, step=1, rng={},
            config=config, class_names=class_names, pretrained_cfg={"architecture": TINY, "source": "res2net",
                                                                    "num_classes": 3, "label_names": class_names,
                                                                    "input_size": [3, 48, 48], "crop_pct": 0.9}),
        path,
    )
    return path


@pytest.mark.parametrize("kind", ["training checkpoint", "safetensors", "state dict", "MindSpore"])
def test_a_checkpoint_is_opened_once_per_load(
    kind: str, tmp_path: Path, mindcv_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_name = MINDCV_TINY if kind == "MindSpore" else TINY
    if kind == "training checkpoint":
        path = _training_checkpoint(tmp_path / "last.pth", ["a", "b", "c"])
    elif kind == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(randomise_(tiny_res2net()).state_dict(), str(path))
    elif kind == "state dict":
        path = tmp_path / "w.pth"
        torch.save(randomise_(tiny_res2net()).state_dict(), path)
    else:
        path = mindcv_ckpt
    counter = OpenCounter(monkeypatch, path)
    model = create_model(model_name, checkpoint_path=path)
    assert counter.count == 1
    _, info = load_model(model_name, checkpoint_path=path)  # predict's and export's load
    assert counter.count == 2
    assert info.num_classes == model.pretrained_cfg.num_classes
    assert model.pretrained_cfg.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_our_training_checkpoints_carry_class_names_and_the_recipes_eval_transform(
    learned_run: tuple[Path, float]
) -> None:
    run_dir, top1 = learned_run
    path = run_dir / "last.pth"
    cfg = create_model("res2net50", checkpoint_path=path).pretrained_cfg
    assert cfg.architecture == "res2net50_26w_4s" and cfg.source == "res2net" and cfg.has_weights
    assert cfg.num_classes == 10 and cfg.label_names == tuple(str(i) for i in range(10))
    assert (cfg.input_size, cfg.crop_pct, cfg.interpolation) == ((3, 16, 16), 1.0, "bilinear")
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.std == pytest.approx((0.229, 0.224, 0.225))
    assert cfg.top1 == pytest.approx(top1) and cfg.url == path.resolve().as_uri()
    assert cfg.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Fine-tuning to another class count: the new rows have no names.
    with pytest.warns(UserWarning, match="re-initialised"):
        tuned = create_model("res2net50", checkpoint_path=path, num_classes=4).pretrained_cfg
    assert tuned.num_classes == 4 and tuned.label_names is None and tuned.input_size == (3, 16, 16)


def test_a_file_without_metadata_gets_the_architectures_defaults(tmp_path: Path) -> None:
    path = tmp_path / "plain.pth"
    torch.save(randomise_(tiny_res2net(num_classes=1000)).state_dict(), path)
    cfg = create_model(TINY, checkpoint_path=path).pretrained_cfg
    assert cfg.source == "checkpoint" and cfg.label_names == imagenet_label_names() and cfg.input_size == (3, 224, 224)


def test_convert_keeps_the_weights_metadata(tmp_path: Path) -> None:
    source = _training_checkpoint(tmp_path / "last.pth", ["cat", "dog", "bird"])
    converted = tmp_path / "out.safetensors"
    convert(source, converted, TINY)
    cfg = create_model(TINY, checkpoint_path=converted).pretrained_cfg
    assert cfg.label_names == ("cat", "dog", "bird") and cfg.input_size == (3, 48, 48) and cfg.crop_pct == 0.9
    assert cfg.source == "res2net" and cfg.url == converted.resolve().as_uri()


def test_a_mindcv_1001_row_head_names_rows_alike_in_predict_serve_and_validate(
    tmp_path: Path, mindcv_ckpt: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows 0..999 of MindCV's head are ImageNet's classes in order, row 1000 is never trained:
    the same logits give the same class through every entry point."""
    monkeypatch.setenv("RES2NET_HOME", str(tmp_path / "home"))
    sha = hashlib.sha256(mindcv_ckpt.read_bytes()).hexdigest()
    register_weights(MINDCV_TINY, "mindcv", url=mindcv_ckpt.as_uri(), sha256=sha[:8], num_classes=1001,
                     input_size=(3, 64, 64), crop_pct=1.0, license="Apache-2.0 (test)", replace=True)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)

    assert cli.main(["predict", "--model", MINDCV_TINY, "--pretrained", "mindcv", str(image), "--json",
                     "--topk", "1"]) == 0
    (predicted,) = json.loads(capsys.readouterr().out)["results"][0]["predictions"]
    assert predicted["label"] == imagenet_label_names()[predicted["index"]]

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    runner = build_runner(parser.parse_args(["serve", "--model", MINDCV_TINY, "--pretrained"]))
    with Image.open(image) as opened:
        served = runner(runner.preprocess([opened.convert("RGB")]))
    assert runner.info.class_names is not None and len(runner.info.class_names) == 1000
    assert runner.info.class_names[int(served.argmax())] == predicted["label"]

    _, all_rows = load_model(MINDCV_TINY, pretrained="mindcv", num_classes=1001)
    assert all_rows.class_names[predicted["index"]] == predicted["label"]
    assert all_rows.class_names[1000] == "unused_1000"

    data = tmp_path / "imagenet_like"  # 1000 class folders, each holding the same image
    for index in range(1000):
        (data / "val" / f"{index:04d}").mkdir(parents=True)
        (data / "val" / f"{index:04d}" / "photo.png").symlink_to(image)
    per_class = tmp_path / "per_class.csv"
    validate(load_config(["-c", str(DEMO_RECIPE), "--model", MINDCV_TINY, "--pretrained", "True", "--data_dir",
                          str(data), "--image_resize", "64", "--crop_pct", "1.0", "--batch_size", "250",
                          "--per_class_csv", str(per_class), "--num_classes", "1000"], purpose="validate"))
    with per_class.open() as handle:
        correct = [int(row["class_index"]) for row in csv.DictReader(handle) if row["correct"] == "1"]
    assert correct == [predicted["index"]]
