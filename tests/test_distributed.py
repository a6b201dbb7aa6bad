"""Multi-process training and validation on CPU with Gloo: torchrun, and mpirun where installed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from res2net.checkpoint.training import read_training_checkpoint
from res2net.distributed import detect_launcher

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recipe_args(data_dir: Path, run_dir: Path) -> list[str]:
    return [
        "-c", str(DEMO_RECIPE), "--data_dir", str(data_dir), "--ckpt_save_dir", str(run_dir), "--image_resize", "16",
        "--batch_size", "8", "--epoch_size", "1", "--warmup_epochs", "0", "--num_parallel_workers", "0",
        "--distribute", "True", "--device", "cpu", "--log_interval", "1",
    ]  # fmt: skip


def check_two_process_run(completed: subprocess.CompletedProcess[str], run_dir: Path, launcher: str) -> None:
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summaries = [line for line in completed.stdout.splitlines() if line.startswith("run: ")]
    assert len(summaries) == 1, completed.stdout  # rank 0 alone prints the run summary
    assert "world_size=2" in summaries[0] and f"launcher={launcher}" in summaries[0]
    assert "global_batch=16" in summaries[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1  # one writer
    assert rows[0]["val_num_samples"] == 30  # every validation image counted once, none padded
    assert rows[0]["step"] == 40 // 16  # each rank: 20 images / batch 8, remainder dropped
    saved = read_training_checkpoint(run_dir / "last.pth")
    assert saved.epoch == 1


def test_torchrun_two_gloo_workers(tiny_digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
               str(free_port()), str(REPO_ROOT / "train.py"), *recipe_args(tiny_digits_dir, tmp_path),
               "--sync_bn", "True"]
    completed = subprocess.run(command, capture_output=True, text=True, env=subprocess_env, cwd=REPO_ROOT, timeout=600)
    check_two_process_run(completed, tmp_path, "torchrun")
    # SyncBatchNorm is CUDA-only: on CPU/Gloo the run keeps per-process BatchNorm and says so once.
    assert completed.stdout.count("note: sync_bn needs CUDA") == 1, completed.stdout

    validate = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                str(free_port()), str(REPO_ROOT / "validate.py"), "-c", str(DEMO_RECIPE), "--data_dir",
                str(tiny_digits_dir), "--image_resize", "16", "--distribute", "True", "--device", "cpu",
                "--ckpt_path", str(tmp_path / "last.pth")]
    distributed = subprocess.run(validate, capture_output=True, text=True, env=subprocess_env, cwd=REPO_ROOT,
                                 timeout=600)
    assert distributed.returncode == 0, distributed.stderr
    json_lines = [line for line in distributed.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1
    summary = json.loads(json_lines[0])
    recorded = read_training_checkpoint(tmp_path / "last.pth").metrics
    assert summary["num_samples"] == 30
    assert summary["top1"] == pytest.approx(recorded["top1"], abs=1e-9)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed (Debian package openmpi-bin)")
def test_mpirun_two_gloo_workers(tiny_digits_dir: Path, tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The seed's ``mpirun -n N python train.py ...``, unchanged apart from the process count."""
    env = {**subprocess_env, "MASTER_PORT": str(free_port())}
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", "-x", "MASTER_PORT", "-x",
               "OMP_NUM_THREADS", "-x", "CUDA_VISIBLE_DEVICES", "-x", "PYTHONWARNINGS", sys.executable,
               str(REPO_ROOT / "train.py"), *recipe_args(tiny_digits_dir, tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
    check_two_process_run(completed, tmp_path, "OpenMPI")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, ("torchrun", 3, 8, 1)),
        ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_RANK": "5"},
         ("OpenMPI", 5, 16, 5)),
        ({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0"}, ("Intel MPI", 2, 4, 0)),
        ({"PMI_RANK": "1", "PMI_SIZE": "2"}, ("Intel MPI", 1, 2, 0)),
        ({}, None),
    ],
)
def test_launcher_detection(env: dict[str, str], expected: tuple[str, int, int, int] | None) -> None:
    assert detect_launcher(env) == expected
