"""End-to-end training: train -> checkpoint -> validate, resume, fine-tuning, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import res2net
from res2net.checkpoint import HeadReinitialisedWarning
from res2net.checkpoint.training import read_training_checkpoint
from res2net.config import load_config
from res2net.train import train

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"


def tiny_args(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """A few steps of res2net50 on the tiny digits at 16x16."""
    return [
        "-c", str(DEMO_RECIPE), "--data_dir", str(data_dir), "--ckpt_save_dir", str(run_dir),
        "--image_resize", "16", "--batch_size", "16", "--epoch_size", "2", "--warmup_epochs", "0",
        "--num_parallel_workers", "0", "--log_interval", "1", "--keep_checkpoint_max", "1", *extra,
    ]  # fmt: skip


def run_cli(script: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO_ROOT / script), *args], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tiny_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    result = train(load_config(tiny_args(tiny_digits_dir, run_dir), purpose="train"))
    assert result.epochs == 2 and result.final is not None
    return run_dir


def test_run_folder_contents(trained_run: Path) -> None:
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["step"] == 2 * 2  # 40 images / batch 16 (remainder dropped), twice
    assert all(row["val_num_samples"] == 30 for row in rows)
    assert (trained_run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step")
    assert any((trained_run / "tensorboard").iterdir())
    # keep_checkpoint_max 1 with latest_k: only epoch 2's file survives, beside last.pth.
    assert sorted(p.name for p in trained_run.glob("*.pth")) == ["last.pth", "res2net50-2_2.pth"]
    saved = read_training_checkpoint(trained_run / "last.pth")
    assert saved.epoch == 2 and saved.step == 4
    assert saved.class_names == [str(i) for i in range(10)]
    assert saved.config["image_resize"] == 16


def test_validate_cli_reproduces_training_evaluation(
    trained_run: Path, tiny_digits_dir: Path, subprocess_env: dict[str, str]
) -> None:
    completed = run_cli("validate.py", ["-c", str(DEMO_RECIPE), "--data_dir", str(tiny_digits_dir),
                                        "--image_resize", "16", "--ckpt_path", str(trained_run / "last.pth")],
                         subprocess_env)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    recorded = read_training_checkpoint(trained_run / "last.pth").metrics
    assert summary["num_samples"] == 30
    assert summary["top1"] == pytest.approx(recorded["top1"], abs=1e-9)
    assert summary["loss"] == pytest.approx(recorded["loss"], rel=1e-5)


def test_resume_gives_identical_weights(tiny_digits_dir: Path, trained_run: Path, tmp_path: Path) -> None:
    """One epoch, stop, ``--resume auto`` for the second: same weights as the straight run."""
    args = tiny_args(tiny_digits_dir, tmp_path)
    train(load_config([*args, "--epoch_size", "1", "--val_while_train", "False"], purpose="train"))
    train(load_config([*args, "--resume", "auto"], purpose="train"))
    resumed = read_training_checkpoint(tmp_path / "last.pth").model
    straight = read_training_checkpoint(trained_run / "last.pth").model
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_fine_tune_to_another_class_count(trained_run: Path, tmp_path: Path, tiny_digits_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A 10-class checkpoint as the start of a 4-class run: trunk kept, head re-initialised, and the run line
    (not a warning) says so."""
    subset = tmp_path / "four"
    for split in ("train", "val"):
        for label in "0123":
            (subset / split).mkdir(parents=True, exist_ok=True)
            (subset / split / label).symlink_to(tiny_digits_dir / split / label)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HeadReinitialisedWarning)
        result = train(load_config(tiny_args(subset, tmp_path / "run", "--ckpt_path", str(trained_run / "last.pth"),
                                             "--num_classes", "4", "--epoch_size", "1"), purpose="train"))
    run_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("run: "))
    assert f"weights={trained_run / 'last.pth'} (classifier re-initialised for 4 classes)" in run_line
    assert result.final is not None and result.final.num_samples == 4 * 3
    tuned = read_training_checkpoint(tmp_path / "run" / "last.pth").model
    assert tuned["fc.weight"].shape == (4, 2048)
    model = res2net.create_model("res2net50", checkpoint_path=tmp_path / "run" / "last.pth", num_classes=4)
    assert model.fc.out_features == 4


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--lr_shceduler", "cosine"], "unknown config key 'lr_shceduler'"),
        (["--lr", "fast"], "config key 'lr'"),
        (["--data_dir", "/nonexistent/imagenet"], "/nonexistent/imagenet"),
    ],
)
def test_train_cli_user_errors_are_one_line(flag: list[str], message: str, subprocess_env: dict[str, str],
                                            tmp_path: Path) -> None:
    completed = run_cli("train.py", ["-c", str(DEMO_RECIPE), "--ckpt_save_dir", str(tmp_path), *flag],
                        subprocess_env)
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_a_short_run_learns_far_above_chance(learned_run: tuple[Path, float]) -> None:
    """Two epochs on the 1,437 training digits at 16x16 (chance: 10%). Breaking how the learning
    rate, the loss, the labels or the images reach the step leaves the model near chance."""
    run_dir, top1 = learned_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert top1 >= 80.0, f"val top-1 {top1:.1f}% after two epochs"
    assert rows[-1]["train_loss"] < 0.75 * rows[0]["train_loss"]
    assert rows[-1]["val_top1"] == pytest.approx(top1)


# The seed's Quick Start, as printed (MindCV's model card for Res2Net).
SEED_TRAIN = "python train.py --config configs/res2net/res2net_50_ascend.yaml --data_dir {data} --distribute False"
SEED_VALIDATE = "python validate.py -c configs/res2net/res2net_50_ascend.yaml --data_dir {data} --ckpt_path {ckpt}"
# What a user adds to fit the digits on a CPU in seconds: the class count and sizes, nothing else.
DIGITS_SIZE = ["--num_classes", "10", "--image_resize", "16", "--batch_size", "16", "--epoch_size", "1",
               "--num_parallel_workers", "0", "--num_samples", "64"]


@pytest.mark.slow
def test_the_seeds_standalone_and_validate_commands_run_verbatim(
    tiny_digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """From a folder laid out like a MindCV checkout (train.py, validate.py, configs/ beside each other)."""
    for entry in ("train.py", "validate.py", "configs"):
        (tmp_path / entry).symlink_to(REPO_ROOT / entry)
    python = sys.executable

    def run(command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        words = command.split()
        assert words[0] == "python"
        return subprocess.run([python, *words[1:], *extra], capture_output=True, text=True, env=subprocess_env,
                              cwd=tmp_path, timeout=600)

    trained = run(SEED_TRAIN.format(data=tiny_digits_dir), *DIGITS_SIZE)
    assert trained.returncode == 0, trained.stderr
    assert "note: 'amp_level: O3'" in trained.stdout and "note: 'mode: 0' is ignored" in trained.stdout
    assert "launcher=none" in trained.stdout and "epochs=1" in trained.stdout
    checkpoint = tmp_path / "ckpt" / "last.pth"  # MindCV's ckpt_save_dir: ./ckpt
    assert checkpoint.is_file()

    validated = run(SEED_VALIDATE.format(data=tiny_digits_dir, ckpt=checkpoint), "--num_classes", "10",
                    "--image_resize", "16", "--batch_size", "16", "--num_parallel_workers", "0")
    assert validated.returncode == 0, validated.stderr
    summary = json.loads(validated.stdout.strip().splitlines()[-1])
    assert summary["num_samples"] == 30 and summary["checkpoint"] == str(checkpoint)
    recorded = read_training_checkpoint(checkpoint).metrics
    assert recorded is not None and summary["top1"] == pytest.approx(recorded["top1"], abs=1e-9)


def test_a_folder_smaller_than_one_batch_keeps_its_partial_batch(
    tiny_digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """40 images and the demo recipe's drop_remainder with a batch of 64: dropping would leave every epoch
    without a step and report an untrained score. The partial batch is kept, and the run says so once."""
    result = train(load_config(tiny_args(tiny_digits_dir, tmp_path, "--batch_size", "64"), purpose="train"))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]  # one step per epoch
    assert result.final is not None
    out = capsys.readouterr().out
    assert out.count("fewer than one batch of 64") == 1 and "one batch of 40" in out
    assert "train_samples=40" in out


def test_a_single_training_image_is_one_clear_error(tiny_digits_dir: Path, tmp_path: Path) -> None:
    from res2net.errors import DataError

    args = tiny_args(tiny_digits_dir, tmp_path, "--num_samples", "1")
    with pytest.raises(DataError, match=r"has 1 image\(s\) for 1 process\(es\): training needs at least 2"):
        train(load_config(args, purpose="train"))
