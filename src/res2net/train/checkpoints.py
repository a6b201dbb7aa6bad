"""A run's checkpoint files: MindCV's keep policies and ``--resume auto``.

The file layout and the atomic write belong to :mod:`res2net.checkpoint.training`: a
crash during a save leaves the previous file intact; ``last.pth`` is replaced that way after
every save and is what ``--resume auto`` reads first. The per-epoch files are kept by
``ckpt_save_policy`` (``latest_k`` or ``top_k`` by validation top-1, ``keep_checkpoint_max`` of
them); if ``last.pth`` cannot be read, resuming falls back to the newest per-epoch file that
can, with a warning.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..checkpoint.training import atomic_torch_save, read_training_checkpoint
from ..errors import CheckpointError


class RunCheckpoint(Protocol):
    """What the manager saves: a run's state after ``epoch`` epochs, as a torch-saveable dict
    (classification's TrainingCheckpoint, the dense tasks' DenseCheckpoint)."""

    @property
    def epoch(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


C = TypeVar("C")

LAST_NAME = "last.pth"
_EPOCH_FILE = re.compile(r"^(?P<model>.+)-(?P<epoch>\d+)_(?P<step>\d+)\.pth$")


class CheckpointManager:
    """Writes the run's checkpoints and applies the keep policy.

    Args:
        directory: the run folder (``ckpt_save_dir``).
        model_name: prefix of the per-epoch files, as MindCV names them
            (``res2net50-12_1251.pth``: epoch 12, 1251 steps per epoch).
        policy: ``latest_k``, ``top_k`` or None (keep all).
        keep_max: how many per-epoch files the policy keeps.
    """

    def __init__(self, directory: Path, model_name: str, policy: str | None, keep_max: int) -> None:
        self.directory = directory
        self.model_name = model_name
        self.policy = policy
        self.keep_max = keep_max
        self._index_path = directory / "checkpoints.json"
        self._scores: dict[str, float] = self._read_index()

    def save(self, checkpoint: RunCheckpoint, *, steps_per_epoch: int, top1: float | None) -> Path:
        """Write ``last.pth`` and the epoch file, then delete what the policy drops.

        ``last.pth`` goes first: a crash between the two writes then leaves ``last.pth``
        as the newest complete checkpoint, which ``--resume auto`` reads first.
        """
        path = self.directory / f"{self.model_name}-{checkpoint.epoch}_{steps_per_epoch}.pth"
        state = checkpoint.to_dict()
        atomic_torch_save(state, self.directory / LAST_NAME)
        atomic_torch_save(state, path)
        self._scores[path.name] = float("-inf") if top1 is None else top1
        self._apply_policy()
        self._write_index()
        return path

    def epoch_files(self) -> list[Path]:
        """Per-epoch checkpoints present on disk, oldest first."""
        found = []
        for path in self.directory.glob(f"{glob_escape(self.model_name)}-*_*.pth"):
            match = _EPOCH_FILE.match(path.name)
            if match and match["model"] == self.model_name:
                found.append((int(match["epoch"]), path))
        return [path for _, path in sorted(found)]

    def remove_partial_writes(self) -> list[Path]:
        """Delete the temporary files of saves that a crash interrupted; returns them.

        They are never read as checkpoints (hidden names ending in ``.tmp``), but each is up
        to a full checkpoint's size, and a run restarted after many crashes would pile them up.
        Call only while no save is running (at start-up, on the process that saves).
        """
        partial = sorted(self.directory.glob(".*.pth.*.tmp"))
        for path in partial:
            path.unlink(missing_ok=True)
        return partial

    def _apply_policy(self) -> None:
        files = self.epoch_files()
        if self.policy is None or len(files) <= self.keep_max:
            return
        if self.policy == "latest_k":
            doomed = files[: len(files) - self.keep_max]
        else:
            # Best top-1 first; among equal scores the newer file wins.
            ranked = sorted(
                enumerate(files),
                key=lambda item: (self._scores.get(item[1].name, float("-inf")), item[0]),
                reverse=True,
            )
            doomed = [path for _, path in ranked[self.keep_max :]]
        for path in doomed:
            path.unlink(missing_ok=True)
            self._scores.pop(path.name, None)

    def _read_index(self) -> dict[str, float]:
        try:
            saved = json.loads(self._index_path.read_text())
            return {k: float("-inf") if v is None else float(v) for k, v in saved.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def _write_index(self) -> None:
        tmp = self._index_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({k: (v if v != float("-inf") else None) for k, v in self._scores.items()}))
        os.replace(tmp, self._index_path)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_resume_checkpoint(
    directory: Path, model_name: str, reader: Callable[[Path], C] = read_training_checkpoint  # type: ignore[assignment]
) -> tuple[Path, C] | None:
    """The newest checkpoint of a run folder that ``reader`` accepts (``--resume auto``), or None.

    ``last.pth`` first, then per-epoch files newest first; an unreadable one is reported
    with a warning and skipped, so a file damaged by a crash or a full disk costs one
    epoch, not the run.
    """
    manager = CheckpointManager(directory, model_name, policy=None, keep_max=1)
    candidates = [directory / LAST_NAME, *reversed(manager.epoch_files())]
    for path in candidates:
        if not path.exists():
            continue
        try:
            return path, reader(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
    return None
