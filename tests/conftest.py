"""Shared fixtures: a small real dataset (scikit-learn's digits) written once per session."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist (the suite runs with -n auto): each worker is a process of its own. Left at torch's default,
    # every worker would start one OpenMP thread per core and the workers' threads would fight over the cores
    # (several times slower than one process alone); the cores are shared out instead, before torch is imported,
    # and the CLI subprocesses of the tests inherit it.
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

import pytest
from filelock import FileLock

from res2net.data import write_digits_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary root, which the pytest-xdist workers of one run share (each worker's own
    basetemp is a sub-folder of it); the basetemp itself without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Any]) -> tuple[Path, Any]:
    """The folder ``name`` of the shared root and what ``build(folder)`` returned (JSON), built by the first
    worker that asks and read back by the others. Shared, not per worker: a worker deletes its own basetemp
    when it finishes, while the other may still use what was built there."""
    folder = shared_folder(tmp_path_factory) / name
    with FileLock(f"{folder}.lock"):
        done = shared_folder(tmp_path_factory) / f"{name}.json"
        if not done.is_file():
            folder.mkdir()
            done.write_text(json.dumps(build(folder)))
        return folder, json.loads(done.read_text())


@pytest.fixture(scope="session", autouse=True)
def res2net_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Caches (downloads, OpenVINO's compiled models and int8 models, the fused BatchNorm kernels'
    build) go to a folder of the test session, never to the user's ~/.cache; subprocesses inherit it."""
    home = shared_folder(tmp_path_factory) / "res2net_home"  # one kernel build and one download cache per run
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RES2NET_HOME", str(home))
        patch.setenv("TORCH_EXTENSIONS_DIR", str(home / "torch_extensions"))
        yield home


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits as ImageNet-style folders at 32x32 (1,437 train / 360 val images)."""
    return built_once(tmp_path_factory, "digits", lambda root: write_digits_dataset(root, image_size=32))[0]


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

    def train_two_epochs(run_dir: Path) -> float:
        args = [
            "-c", str(REPO_ROOT / "configs/demo/res2net50_digits.yaml"), "--data_dir", str(digits_dir),
            "--ckpt_save_dir", str(run_dir), "--image_resize", "16", "--batch_size", "32", "--epoch_size", "2",
            "--warmup_epochs", "0", "--decay_epochs", "2", "--lr", "0.002", "--log_interval", "1000",
            "--keep_checkpoint_max", "1",
        ]  # fmt: skip
        result = train(load_config(args, purpose="train"))
        assert result.final is not None
        return result.final.top1

    return built_once(tmp_path_factory, "learned_run", train_two_epochs)
