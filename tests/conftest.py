"""Shared fixtures: a small real dataset (scikit-learn's digits) written once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from res2net.data import write_digits_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def res2net_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Caches (downloads, OpenVINO's compiled models and int8 models, the fused BatchNorm kernels'
    build) go to a folder of the test session, never to the user's ~/.cache; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("res2net_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RES2NET_HOME", str(home))
        patch.setenv("TORCH_EXTENSIONS_DIR", str(home / "torch_extensions"))
        yield home


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits as ImageNet-style folders at 32x32 (1,437 train / 360 val images)."""
    root = tmp_path_factory.mktemp("digits")
    write_digits_dataset(root, image_size=32)
    return root


@pytest.fixture(scope="session")
def tiny_digits_dir(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-train / 30-val slice of the digits (4 and 3 per class) for end-to-end runs."""
    root = tmp_path_factory.mktemp("tiny_digits")
    for split, per_class in (("train", 4), ("val", 3)):
        for class_dir in sorted((digits_dir / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                (target / image.name).symlink_to(image)
    return root


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for CLI subprocesses: two threads, no CUDA, quiet warnings."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"})
    return env


@pytest.fixture(scope="session")
def learned_run(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """res2net50 trained for two epochs on all digits at 16x16 (about 20 s on 2 cores): a model that
    has really learned, for tests that need meaningful predictions. Returns the run folder and the
    final validation top-1 that training reported."""
    from res2net.config import load_config
    from res2net.train import train

    run_dir = tmp_path_factory.mktemp("learned_run")
    args = [
        "-c", str(REPO_ROOT / "configs/demo/res2net50_digits.yaml"), "--data_dir", str(digits_dir),
        "--ckpt_save_dir", str(run_dir), "--image_resize", "16", "--batch_size", "32", "--epoch_size", "2",
        "--warmup_epochs", "0", "--decay_epochs", "2", "--lr", "0.002", "--log_interval", "1000",
        "--keep_checkpoint_max", "1",
    ]  # fmt: skip
    result = train(load_config(args, purpose="train"))
    assert result.final is not None
    return run_dir, result.final.top1
