"""Faults and bad input lose nothing and say what went wrong (issue 6, training and CLI side).

Kills are real SIGKILLs of real ``train.py`` / ``torchrun`` processes; the crashes that must
land at an exact point (inside a checkpoint write, at a given step of one rank) are injected
by ``tests/crash_once.py``, a wrapper around the real entry point, because the product has no
test hooks. Runs are res2net50 at 16x16 on the 40-image digits slice: 5 steps per epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import res2net
from res2net.checkpoint.training import read_training_checkpoint
from res2net.cli import main
from res2net.train.checkpoints import find_resume_checkpoint
from res2net.train.step import MAX_CONSECUTIVE_NONFINITE, DivergedError, StepRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO_ROOT / "configs/demo/res2net50_digits.yaml"
CRASH_ONCE = REPO_ROOT / "tests/crash_once.py"
BIN = Path(sys.executable).parent
TIMEOUT_S = 300
STEPS_PER_EPOCH = 5  # 40 images, batch 8
RECIPES = {
    "plain": [],
    # Every source of randomness a resume must restore: mixup/cutmix draws, label smoothing
    # of soft targets, EMA weights and counter, dropout and drop-path.
    "mixed": ["--mixup", "0.2", "--cutmix", "1.0", "--cutmix_prob", "1.0", "--label_smoothing", "0.1",
              "--ema", "True", "--ema_decay", "0.9", "--drop_rate", "0.2", "--drop_path_rate", "0.1"],
}  # fmt: skip


def cli_env() -> dict[str, str]:
    """One thread per process, no CUDA; warnings left on (several assertions read them)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env.update({"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    return env


def train_args(data_dir: Path, run_dir: Path, *extra: str, workers: int = 0, epochs: int = 2) -> list[str]:
    return [
        "-c", str(DEMO_RECIPE), "--data_dir", str(data_dir), "--ckpt_save_dir", str(run_dir), "--image_resize", "16",
        "--batch_size", "8", "--epoch_size", str(epochs), "--warmup_epochs", "0", "--log_interval", "1",
        "--keep_checkpoint_max", "1", "--val_while_train", "False", "--num_parallel_workers", str(workers), *extra,
    ]  # fmt: skip


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run to completion; past TIMEOUT_S, SIGTERM first so torchrun can stop its workers (own sessions)."""
    process = subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env or cli_env(), cwd=REPO_ROOT)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.communicate(timeout=30)
        finally:
            process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python(script: Path | str, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / script), *args]


def kill_at_line(command: list[str], prefix: str) -> str:
    """Run ``command`` until it prints a line starting with ``prefix``, then SIGKILL its process group.

    The group, so DataLoader workers die with the trainer as they would under the OOM killer;
    a watchdog kills it anyway after TIMEOUT_S so a hang cannot block the suite.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
                               cwd=REPO_ROOT, start_new_session=True)
    watchdog = threading.Timer(TIMEOUT_S, os.killpg, (process.pid, signal.SIGKILL))
    watchdog.start()
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if line.startswith(prefix):
                os.killpg(process.pid, signal.SIGKILL)
                break
        process.stdout.close()
        process.wait()
    finally:
        watchdog.cancel()
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def max_weight_difference(first: Path, second: Path) -> float:
    """Largest absolute difference over the weights and (when present) the EMA weights of two checkpoints."""
    a, b = read_training_checkpoint(first), read_training_checkpoint(second)
    differences = [0.0]
    for key in ("model", "model_ema"):
        first_weights, second_weights = getattr(a, key), getattr(b, key)
        assert (first_weights is None) == (second_weights is None), key
        if first_weights is None:
            continue
        assert first_weights.keys() == second_weights.keys()
        differences += [(first_weights[n].double() - second_weights[n].double()).abs().max().item()
                        for n in first_weights]
    return max(differences)


@pytest.fixture(scope="module")
def references(tiny_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted 2-epoch runs of each recipe (0 workers), side by side, that interrupted runs must match."""
    runs = {name: tmp_path_factory.mktemp(f"reference_{name}") for name in RECIPES}
    with ThreadPoolExecutor(len(RECIPES)) as pool:
        done = dict(zip(runs, pool.map(lambda name: run(python("train.py", *train_args(
            tiny_digits_dir, runs[name], *RECIPES[name]))), runs), strict=True))
    for completed in done.values():
        assert completed.returncode == 0, completed.stdout + completed.stderr
    return runs


# --- 1. exact resume after SIGKILL --------------------------------------------------------


@pytest.mark.parametrize(("recipe", "workers"), [("plain", 0), ("mixed", 2)])
def test_sigkill_mid_epoch_then_resume_auto_matches_the_uninterrupted_run(
    recipe: str, workers: int, references: dict[str, Path], tiny_digits_dir: Path, tmp_path: Path
) -> None:
    """Killed at step 3 of epoch 2, resumed from epoch 1's checkpoint: same weights, EMA included.

    The mixed recipe also resumes with 2 DataLoader workers against a 0-worker reference:
    the data order and each image's augmentation do not depend on the worker count.
    """
    args = train_args(tiny_digits_dir, tmp_path, *RECIPES[recipe], workers=workers)
    kill_at_line(python("train.py", *args), f"epoch 2/2: step 3/{STEPS_PER_EPOCH}")
    assert read_training_checkpoint(tmp_path / "last.pth").epoch == 1

    resumed = run(python("train.py", *args, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {tmp_path / 'last.pth'} at epoch 1, step {STEPS_PER_EPOCH}" in resumed.stdout
    assert read_training_checkpoint(tmp_path / "last.pth").step == 2 * STEPS_PER_EPOCH
    assert max_weight_difference(tmp_path / "last.pth", references[recipe] / "last.pth") <= 1e-6


# --- 2. atomic checkpoints -----------------------------------------------------------------


def test_kill_inside_a_save_keeps_last_and_resume_skips_a_truncated_last(
    references: dict[str, Path], tiny_digits_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL with half of epoch 2's ``last.pth`` written; then ``last.pth`` itself damaged.

    The half-written temporary file must neither replace ``last.pth`` nor be taken for a
    checkpoint; a truncated ``last.pth`` is skipped with a warning for the epoch file before it.
    """
    args = train_args(tiny_digits_dir, tmp_path)
    env = {**cli_env(), "CRASH_MARKER": str(tmp_path / "crashed"), "CRASH_IN_SAVE": "2"}
    crashed = run([sys.executable, str(CRASH_ONCE), *args], env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    partial = [path.name for path in tmp_path.glob(".*.tmp")]
    assert len(partial) == 1 and partial[0].startswith(".last.pth."), partial
    assert sorted(path.name for path in tmp_path.glob("*.pth")) == ["last.pth", "res2net50-1_5.pth"]
    found = find_resume_checkpoint(tmp_path, "res2net50")
    assert found is not None and found[0] == tmp_path / "last.pth" and found[1].epoch == 1

    last = tmp_path / "last.pth"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # a disk-full or copy accident
    resumed = run(python("train.py", *args, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping unreadable checkpoint" in resumed.stderr and str(last) in resumed.stderr
    assert f"resumed from {tmp_path / 'res2net50-1_5.pth'} at epoch 1" in resumed.stdout
    assert f"removed {partial[0]}" in resumed.stdout
    assert not list(tmp_path.glob(".*.tmp"))
    assert max_weight_difference(last, references["plain"] / "last.pth") <= 1e-6


# --- 3. non-finite loss --------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """In-process training on one intra-op thread, like the subprocesses: on a busy 2-core machine
    two spinning OpenMP threads made it several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nan_after(finite_steps: int) -> Callable[..., nn.Module]:
    """``create_model`` whose model returns NaN logits in training after ``finite_steps`` forward passes.

    Installed as a forward hook, so the state_dict (and resuming into the model) is unchanged;
    eval-mode passes (the input-size probe) are not counted.
    """

    def build(*args: Any, **kwargs: Any) -> nn.Module:
        model = res2net.create_model(*args, **kwargs)
        passes = 0

        def poison(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            nonlocal passes
            if not module.training:
                return output
            passes += 1
            return output * float("nan") if passes > finite_steps else output

        model.register_forward_hook(poison)
        return model

    return build


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        (4, f"error: loss was NaN/Inf for {MAX_CONSECUTIVE_NONFINITE} batches in a row; stopping."),
        (3, "error: epoch 3 ended with 4 NaN/Inf losses in a row; its checkpoint was not written"),
    ],
)
def test_diverging_run_stops_with_one_line_and_keeps_the_good_checkpoint(
    epochs: int, message: str, references: dict[str, Path], tiny_digits_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, one_thread: None,
) -> None:
    """Resume a good run whose loss turns NaN after one step: good checkpoints stay, the run stops.

    Epoch 3 ends 4 NaN batches into the streak: its checkpoint is refused and the 5th NaN, in
    epoch 4, stops the run; when epoch 3 is the final epoch the run stops right there.
    (``--lr 1e30`` diverges the same way for real, at ~10x the CPU time per NaN step.)
    """
    monkeypatch.setattr("res2net.train.engine.create_model", nan_after(1))
    shutil.copy(references["plain"] / "last.pth", tmp_path / "last.pth")
    before = (tmp_path / "last.pth").stat()
    status = main(["train", *train_args(tiny_digits_dir, tmp_path, "--resume", "auto", epochs=epochs)])
    out, err = capsys.readouterr()
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err
    after = (tmp_path / "last.pth").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # never rewritten
    assert [path.name for path in tmp_path.glob("*.pth")] == ["last.pth"]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["epoch"] == 3 and row["skipped_steps"] == 4
    if epochs == 4:
        assert "warning: epoch 3 ended with 4 NaN/Inf losses in a row" in out


def linear_runner(amp_dtype: str | None, scaler: torch.amp.GradScaler) -> tuple[nn.Linear, StepRunner]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    runner = StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.1), scaler, device=torch.device("cpu"),
                        amp_dtype=amp_dtype, loss_kind="CE", label_smoothing=0.0, accumulation_steps=1, clip_norm=None)
    return model, runner


def test_fp32_nan_steps_are_skipped_and_a_streak_stops() -> None:
    model, runner = linear_runner(None, torch.amp.GradScaler("cpu", enabled=False))
    targets = torch.tensor([0, 1])
    weights = model.weight.detach().clone()
    for _ in range(MAX_CONSECUTIVE_NONFINITE - 1):
        assert torch.isnan(runner.forward_backward(torch.full((2, 4), float("nan")), targets))
        assert runner.optimizer_step() is False
    assert torch.equal(model.weight, weights) and runner.skipped_steps == MAX_CONSECUTIVE_NONFINITE - 1
    runner.forward_backward(torch.randn(2, 4), targets)  # a finite batch ends the streak
    assert runner.optimizer_step() is True and not torch.equal(model.weight, weights)
    assert runner.consecutive_nonfinite == 0
    with pytest.raises(DivergedError, match="in a row"):
        for _ in range(MAX_CONSECUTIVE_NONFINITE):
            runner.forward_backward(torch.full((2, 4), float("inf")), targets)
            runner.optimizer_step()


def test_fp16_gradient_overflow_skips_the_step_and_lowers_the_scale() -> None:
    """CPU fp16 autocast + GradScaler: a finite loss whose scaled gradients overflow fp16."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    model, runner = linear_runner("float16", scaler)
    targets = torch.tensor([0, 1])
    weights = model.weight.detach().clone()
    loss = runner.forward_backward(torch.full((2, 4), 2000.0), targets)
    assert torch.isfinite(loss)
    assert runner.optimizer_step() is False
    assert torch.equal(model.weight, weights) and scaler.get_scale() == 2.0**15
    assert runner.skipped_steps == 1 and runner.consecutive_nonfinite == 0  # an overflow is not divergence
    runner.forward_backward(torch.randn(2, 4), targets)
    assert runner.optimizer_step() is True and not torch.equal(model.weight, weights)


# --- 4. distributed fault --------------------------------------------------------------------


def test_torchrun_restarts_after_a_worker_is_killed_and_resumes(tiny_digits_dir: Path, tmp_path: Path) -> None:
    """Rank 1 SIGKILLs itself at its 3rd step (epoch 2 of 2, 2 steps per epoch per rank).

    torchrun (``--max-restarts 1``) restarts both workers; ``--resume auto`` takes epoch 1's
    checkpoint and the run completes. (Before init_distributed gave each attempt its own store
    namespace, the restarted ranks could read the dead rank's Gloo address from the first
    attempt and fail to connect or hang: 5 runs in 8 failed here.)
    """
    marker = tmp_path / "crashed"
    env = {**cli_env(), "CRASH_MARKER": str(marker), "CRASH_AT_STEP": "3", "CRASH_RANK": "1"}
    command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--max-restarts", "1", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(CRASH_ONCE),
               *train_args(tiny_digits_dir, tmp_path, "--distribute", "True", "--device", "cpu", "--resume", "auto")]
    completed = run(command, env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert marker.exists() and "exitcode: -9" in completed.stderr  # rank 1 really died
    assert f"resumed from {tmp_path / 'last.pth'} at epoch 1, step 2" in completed.stdout
    saved = read_training_checkpoint(tmp_path / "last.pth")
    assert (saved.epoch, saved.step) == (2, 4)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]


# --- 5. bad input ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tiny_digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Broken datasets, recipes and checkpoints, each with one thing wrong."""
    root = tmp_path_factory.mktemp("bad_inputs")
    made: dict[str, Path] = {}
    for name in ("empty_class", "mismatch", "no_val", "corrupt"):
        made[name] = root / name
        shutil.copytree(tiny_digits_dir, made[name], symlinks=True)
    (made["empty_class"] / "train/10").mkdir()
    (made["empty_class"] / "val/10").mkdir()
    (made["mismatch"] / "val/9").rename(made["mismatch"] / "val/nine")
    shutil.rmtree(made["no_val"] / "val")
    some_jpeg = next((tiny_digits_dir / "train/3").iterdir()).read_bytes()
    (made["corrupt"] / "train/3/truncated.jpg").write_bytes(some_jpeg[: len(some_jpeg) // 3])
    (made["corrupt"] / "train/5/notes.jpg").write_text("not an image\n")
    (made["corrupt"] / "train/7/empty.png").write_bytes(b"")
    (made["corrupt"] / "val/1/garbage.jpg").write_bytes(bytes(range(256)))
    made["typo_yaml"] = root / "typo.yaml"
    made["typo_yaml"].write_text("model: res2net50\nbatch_sise: 8\n")
    made["type_yaml"] = root / "type.yaml"
    made["type_yaml"].write_text("model: res2net50\nbatch_size: lots\n")
    made["text_ckpt"] = root / "notes.pth"
    made["text_ckpt"].write_text("these are my notes\n")
    made["dla_ckpt"] = root / "res2net_dla60.pth"
    torch.save(res2net.create_model("res2net_dla60", num_classes=10).state_dict(), made["dla_ckpt"])
    made["truncated_ckpt"] = root / "truncated.pth"
    whole = made["dla_ckpt"].read_bytes()
    made["truncated_ckpt"].write_bytes(whole[: len(whole) // 2])
    yield made


# name -> (exit status, what the one line on stderr must say)
EXPECTED_ERRORS: dict[str, tuple[int, str]] = {
    "unknown key in a recipe file": (2, "unknown config key 'batch_sise' in "),
    "mistyped flag": (2, "unknown config key 'epoch_sizes'"),
    "wrong type in a recipe file": (2, "type.yaml expects an integer, got 'lots'"),
    "wrong type of a flag": (2, "config key 'ema' on the command line (--ema) expects a boolean"),
    "missing data_dir": (1, "data_dir /nonexistent/imagenet does not exist"),
    "missing split": (1, "split folder"),
    "empty class folder": (1, "contain no images (10)"),
    "train/val class mismatch": (1, "class folders differ"),
    "truncated checkpoint": (1, "truncated or corrupted"),
    "text file as checkpoint": (1, "not a checkpoint this package can read"),
    "checkpoint of another architecture": (1, "does not fit model res2net50"),
    "resume from a text file": (1, "not a checkpoint this package can read"),
    "resume from another architecture": (1, "is not a res2net training checkpoint"),
}
# Importing torch costs ~5 s a process, so each entry point runs one case as a real process;
# every case also runs in-process through ``res2net.cli.main``, the code behind all three.
PROCESS_CASES = {
    "unknown key in a recipe file": "train.py",
    "checkpoint of another architecture": "validate.py",
    "missing data_dir": "res2net",
}


def bad_input_argv(data: Path, bad: dict[str, Path], run_dir: Path) -> dict[str, list[str]]:
    """``res2net`` arguments (``train ...`` / ``validate ...``) of each EXPECTED_ERRORS case."""
    train = ["train", "-c", str(DEMO_RECIPE), "--image_resize", "16", "--epoch_size", "1",
             "--num_parallel_workers", "0", "--ckpt_save_dir", str(run_dir), "--data_dir", str(data)]
    validate = ["validate", "-c", str(DEMO_RECIPE), "--image_resize", "16", "--num_parallel_workers", "0",
                "--data_dir", str(data)]
    return {
        "unknown key in a recipe file": ["train", "-c", str(bad["typo_yaml"])],
        "mistyped flag": [*train, "--epoch_sizes", "3"],
        "wrong type in a recipe file": ["train", "-c", str(bad["type_yaml"])],
        "wrong type of a flag": [*train, "--ema", "maybe"],
        "missing data_dir": [*validate, "--data_dir", "/nonexistent/imagenet"],
        "missing split": [*train, "--data_dir", str(bad["no_val"])],
        "empty class folder": [*train, "--data_dir", str(bad["empty_class"])],
        "train/val class mismatch": [*train, "--data_dir", str(bad["mismatch"])],
        "truncated checkpoint": [*validate, "--ckpt_path", str(bad["truncated_ckpt"])],
        "text file as checkpoint": [*validate, "--ckpt_path", str(bad["text_ckpt"])],
        "checkpoint of another architecture": [*validate, "--ckpt_path", str(bad["dla_ckpt"])],
        "resume from a text file": [*train, "--resume", str(bad["text_ckpt"])],
        "resume from another architecture": [*train, "--resume", str(bad["dla_ckpt"])],
    }  # fmt: skip


def entry_point(script: str, argv: list[str]) -> list[str]:
    """The process command line for ``res2net`` arguments: ``train.py``/``validate.py`` or the console script."""
    if script == "res2net":
        return [str(BIN / "res2net"), *argv]
    assert script == f"{argv[0]}.py"
    return python(script, *argv[1:])


def check_one_line_error(case: str, status: int, stderr: str) -> None:
    expected_status, message = EXPECTED_ERRORS[case]
    assert status == expected_status, stderr
    assert stderr.startswith("error: ") and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


@pytest.fixture(scope="module")
def cli_runs(tiny_digits_dir: Path, bad_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, subprocess.CompletedProcess[str]]:
    """PROCESS_CASES and a training run over corrupt images (2 workers), side by side."""
    argv = bad_input_argv(tiny_digits_dir, bad_inputs, tmp_path_factory.mktemp("bad_run"))
    commands = {case: entry_point(script, argv[case]) for case, script in PROCESS_CASES.items()}
    commands["corrupt images"] = [str(BIN / "res2net"), "train", *train_args(
        bad_inputs["corrupt"], tmp_path_factory.mktemp("corrupt_run"), "--val_while_train", "True",
        "--drop_remainder", "False", workers=2, epochs=1)]
    with ThreadPoolExecutor(len(commands)) as pool:
        return dict(zip(commands, pool.map(run, commands.values()), strict=True))


@pytest.mark.parametrize("case", list(PROCESS_CASES))
def test_bad_input_through_each_entry_point_is_one_line(
    case: str, cli_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    completed = cli_runs[case]
    check_one_line_error(case, completed.returncode, completed.stderr)


@pytest.mark.parametrize("case", list(EXPECTED_ERRORS))
def test_bad_input_is_one_line_and_a_nonzero_exit(
    case: str, tiny_digits_dir: Path, bad_inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(bad_input_argv(tiny_digits_dir, bad_inputs, tmp_path)[case])
    check_one_line_error(case, status, capsys.readouterr().err)


def test_corrupt_images_are_skipped_named_and_counted(
    cli_runs: dict[str, subprocess.CompletedProcess[str]], bad_inputs: dict[str, Path]
) -> None:
    """Three unreadable training images (2 workers) and one validation image: warned, counted, the run goes on."""
    completed = cli_runs["corrupt images"]
    assert completed.returncode == 0, completed.stderr
    corrupt = bad_inputs["corrupt"]
    for name in ("train/3/truncated.jpg", "train/5/notes.jpg", "train/7/empty.png", "val/1/garbage.jpg"):
        assert f"skipping unreadable image {corrupt / name}" in completed.stderr, name
    assert "Traceback" not in completed.stderr
    epoch_lines = [line for line in completed.stdout.splitlines() if line.startswith("epoch {")]
    assert len(epoch_lines) == 1 and '"skipped_images": 3' in epoch_lines[0]
    run_dir = Path(completed.args[completed.args.index("--ckpt_save_dir") + 1])
    row = json.loads((run_dir / "metrics.jsonl").read_text())
    assert row["skipped_images"] == 3 and row["val_num_samples"] == 30
