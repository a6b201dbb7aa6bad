"""Checkpoint keep policies (latest_k / top_k), atomic writes and ``--resume auto`` fallback."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from res2net.checkpoint.training import TrainingCheckpoint, atomic_torch_save, read_training_checkpoint
from res2net.errors import CheckpointError
from res2net.train.checkpoints import LAST_NAME, CheckpointManager, find_resume_checkpoint


def checkpoint_at(epoch: int) -> TrainingCheckpoint:
    """A minimal checkpoint: the policy tests only need its epoch and some weights."""
    return TrainingCheckpoint(
        model_name="res2net50", model={"weights": torch.full((2,), float(epoch))}, optimizer={}, scaler={},
        schedule={}, epoch=epoch, step=7 * epoch, rng={}, config={}, class_names=["a", "b"],
        pretrained_cfg={"architecture": "res2net50_26w_4s"},
    )


def save_epochs(manager: CheckpointManager, scores: list[float | None]) -> None:
    for epoch, score in enumerate(scores, start=1):
        manager.save(checkpoint_at(epoch), steps_per_epoch=7, top1=score)


def kept_epochs(manager: CheckpointManager) -> list[int]:
    return [read_training_checkpoint(path).epoch for path in manager.epoch_files()]


def test_latest_k_keeps_the_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "res2net50", "latest_k", keep_max=2)
    save_epochs(manager, [50.0, 90.0, 10.0, 20.0])
    assert kept_epochs(manager) == [3, 4]
    assert [p.name for p in manager.epoch_files()] == ["res2net50-3_7.pth", "res2net50-4_7.pth"]
    assert read_training_checkpoint(tmp_path / LAST_NAME).epoch == 4


def test_top_k_keeps_the_best_by_val_top1(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "res2net50", "top_k", keep_max=2)
    save_epochs(manager, [50.0, 90.0, 10.0, 70.0, 60.0])
    assert kept_epochs(manager) == [2, 4]
    assert read_training_checkpoint(tmp_path / LAST_NAME).epoch == 5  # last.pth is always the newest


def test_top_k_survives_a_restart(tmp_path: Path) -> None:
    """Scores are kept beside the files, so a resumed run ranks old and new checkpoints together."""
    save_epochs(CheckpointManager(tmp_path, "m", "top_k", keep_max=2), [80.0, 90.0])
    manager = CheckpointManager(tmp_path, "m", "top_k", keep_max=2)
    manager.save(checkpoint_at(3), steps_per_epoch=7, top1=85.0)
    assert kept_epochs(manager) == [2, 3]


def test_no_policy_keeps_everything(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "m", None, keep_max=1)
    save_epochs(manager, [1.0, 2.0, 3.0])
    assert kept_epochs(manager) == [1, 2, 3]


def test_other_runs_files_are_left_alone(tmp_path: Path) -> None:
    other = CheckpointManager(tmp_path, "res2net101", "latest_k", keep_max=1)
    save_epochs(other, [1.0])
    manager = CheckpointManager(tmp_path, "res2net1", "latest_k", keep_max=1)
    save_epochs(manager, [1.0, 2.0])
    assert (tmp_path / "res2net101-1_7.pth").exists()


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pth"
    atomic_torch_save(checkpoint_at(1).to_dict(), target)

    def failing_save(obj: object, handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save(checkpoint_at(2).to_dict(), target)
    monkeypatch.undo()
    assert read_training_checkpoint(target).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]  # no temporary file left behind


def test_resume_auto_falls_back_past_an_unreadable_last(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, "m", "latest_k", keep_max=3)
    save_epochs(manager, [1.0, 2.0])
    (tmp_path / LAST_NAME).write_bytes((tmp_path / LAST_NAME).read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        found = find_resume_checkpoint(tmp_path, "m")
    assert found is not None
    path, state = found
    assert path.name == "m-2_7.pth" and state.epoch == 2


def test_resume_auto_on_an_empty_folder(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_resume_checkpoint(tmp_path, "m") is None


def test_foreign_files_are_not_training_checkpoints(tmp_path: Path) -> None:
    weights_only = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, weights_only)
    with pytest.raises(CheckpointError, match="not a res2net training checkpoint"):
        read_training_checkpoint(weights_only)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        read_training_checkpoint(text)
