"""Your own images: `res2net finetune` on one folder of class sub-folders, the pictures every run draws, and the
record of where every run and checkpoint came from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from res2net.checkpoint.training import read_training_checkpoint
from res2net.cli import main
from res2net.errors import DataError
from res2net.plots import run_labels
from res2net.train.finetune import RECIPE, prepare_split

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def own_images(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a user has: one folder of class folders (the digits 5-9, 24 images each), no train/ or val/."""
    root = tmp_path_factory.mktemp("own_images")
    for digit in range(5, 10):
        (root / f"digit_{digit}").mkdir()
        for image in sorted((digits_dir / "train" / str(digit)).iterdir())[:24]:
            shutil.copyfile(image, root / f"digit_{digit}" / image.name)
    return root


def test_the_split_is_seeded_stratified_and_per_class(own_images: Path, tmp_path: Path) -> None:
    first = prepare_split(own_images, tmp_path / "a", val_fraction=0.25, seed=3)
    again = prepare_split(own_images, tmp_path / "b", val_fraction=0.25, seed=3)
    for name in (f"digit_{d}" for d in range(5, 10)):
        val = sorted(p.name for p in (first.root / "val" / name).iterdir())
        assert len(val) == 6 and len(list((first.root / "train" / name).iterdir())) == 18
        assert val == sorted(p.name for p in (again.root / "val" / name).iterdir())
        assert (first.root / "val" / name / val[0]).resolve().parent == own_images / name
    other = prepare_split(own_images, tmp_path / "c", val_fraction=0.25, seed=4)
    assert sorted(p.name for p in (other.root / "val" / "digit_5").iterdir()) != sorted(
        p.name for p in (first.root / "val" / "digit_5").iterdir())
    lonely = tmp_path / "lonely" / "only_one"
    lonely.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(lonely / "a.png")
    with pytest.raises(DataError, match="class 'only_one' has 1 image"):
        prepare_split(lonely.parent, tmp_path / "d", val_fraction=0.2, seed=0)


@pytest.mark.slow
def test_finetune_one_folder_end_to_end(own_images: Path, learned_run: tuple[Path, float], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """From the digits model to five new classes: above chance, class names and eval transform in the best
    checkpoint, curves.png and env.json in the run folder, and a run line naming the start."""
    weights = learned_run[0] / "last.pth"
    output = tmp_path / "run"
    assert main(["finetune", str(own_images), "--model", "res2net50", "--weights", str(weights), "--epochs", "4",
                 "--output", str(output), "--log_interval", "1000"]) == 0
    out = capsys.readouterr().out
    assert f"weights={weights} (classifier re-initialised for 5 classes)" in out
    best_line = next(line for line in out.splitlines() if line.strip().startswith("best: val top-1"))
    best_top1 = float(best_line.split("top-1 ")[1].split("%")[0])
    assert best_top1 > 60.0, out  # chance is 20%
    best = Path(best_line.split("-> ")[1].strip())
    saved = read_training_checkpoint(best)
    assert saved.class_names == [f"digit_{d}" for d in range(5, 10)]
    assert saved.pretrained_cfg["label_names"] == saved.class_names
    assert saved.pretrained_cfg["input_size"] == [3, 16, 16]  # the starting weights' own input size
    assert saved.pretrained_cfg["provenance"].startswith("trained ")
    assert (output / "curves.png").stat().st_size > 10_000
    env = json.loads((output / "env.json").read_text())
    assert env["versions"]["torch"] and env["host"]["cpu"] and env["command"].startswith("res2net finetune ")
    assert len(list((output / "split" / "val" / "digit_7").iterdir())) == 5  # 20% of 24


def test_finetune_refuses_unknown_weights(own_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finetune", str(own_images), "--model", "res2net50", "--weights", "imagenet22k"]) == 1
    assert "--weights 'imagenet22k' is neither a file, a weight tag of res2net50 (official, mindcv)" in (
        capsys.readouterr().err)


def test_the_packaged_recipe_is_the_one_train_py_users_get() -> None:
    assert (REPO_ROOT / "configs" / "finetune" / "finetune.yaml").read_text() == RECIPE.read_text()


@pytest.mark.slow
def test_validate_draws_the_confusion_matrix_and_names_the_checkpoints_origin(
    learned_run: tuple[Path, float], digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    picture = tmp_path / "confusion.png"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "validate.py"), "-c", str(REPO_ROOT / "configs/demo/res2net50_digits.yaml"),
         "--data_dir", str(digits_dir), "--image_resize", "16", "--ckpt_path", str(learned_run[0] / "last.pth"),
         "--confusion_matrix", str(picture)],
        capture_output=True, text=True, env=subprocess_env, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"checkpoint {learned_run[0] / 'last.pth'}: trained " in done.stdout and "res2net 0." in done.stdout
    assert picture.stat().st_size > 10_000
    with Image.open(picture) as image:
        assert min(image.size) > 400


def test_plot_overlays_runs(learned_run: tuple[Path, float], tmp_path: Path) -> None:
    output = tmp_path / "both.png"
    assert main(["plot", str(learned_run[0]), str(learned_run[0]), "--output", str(output)]) == 0
    assert output.stat().st_size > 10_000
    assert main(["plot", str(tmp_path)]) == 1  # not a run folder: one line, no traceback


def test_runs_of_the_same_name_get_labels_that_tell_them_apart(tmp_path: Path) -> None:
    probe, recipe, other = tmp_path / "probe" / "k20_s0", tmp_path / "recipe" / "k20_s0", tmp_path / "recipe" / "k5"
    assert run_labels([probe, recipe, other]) == ["probe/k20_s0", "recipe/k20_s0", "recipe/k5"]
    assert run_labels([recipe, other]) == ["k20_s0", "k5"]
    assert run_labels([recipe, recipe]) == ["k20_s0", "k20_s0"]  # the same run twice is the same run
