"""Learning-rate schedules with MindCV's names and meanings, as a function of the step.

MindCV precomputes a per-step list (``mindcv.scheduler.create_scheduler``): a linear warm-up,
then the main schedule counted from the warm-up's end. We compute the same value from the
global step instead, so nothing but the step counter needs saving to resume; the formulas are
MindCV 0.3.0's (tests/test_mindcv_fidelity.py compares every step of every recipe with lists
MindCV itself produced). ``lr_epoch_stair`` (one value per epoch) rounds the epoch down, as
MindCV's non-"refined" variants do. Where MindCV refuses a combination (``one_cycle`` and
``cyclic`` with a warm-up or per-epoch stairs), the config check refuses it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import Config
from ..errors import ConfigError

ONE_CYCLE_RISE_FRACTION = 0.3  # MindCV's pct_start
ONE_CYCLE_DIV_FACTOR = 25.0  # the cycle starts at lr / 25


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate at any optimizer step of a run."""

    name: str
    lr: float
    min_lr: float
    steps_per_epoch: int
    epochs: int
    warmup_epochs: int = 0
    warmup_factor: float = 0.0
    decay_epochs: int = 0
    decay_rate: float = 0.1
    milestones: tuple[int, ...] = ()
    num_cycles: int = 1
    cycle_decay: float = 1.0
    epoch_stair: bool = False

    @classmethod
    def from_config(cls, cfg: Config, steps_per_epoch: int) -> LRSchedule:
        name = "cosine_decay" if cfg.scheduler == "warmup_cosine_decay" else cfg.scheduler
        return cls(
            name=name,
            lr=cfg.lr,
            min_lr=cfg.min_lr,
            steps_per_epoch=max(1, steps_per_epoch),
            epochs=cfg.epoch_size,
            warmup_epochs=cfg.warmup_epochs,
            warmup_factor=cfg.warmup_factor,
            decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate,
            milestones=tuple(cfg.multi_step_decay_milestones),
            num_cycles=cfg.num_cycles,
            cycle_decay=cfg.cycle_decay,
            epoch_stair=cfg.lr_epoch_stair,
        )

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        if self.epoch_stair:
            epoch = math.floor(epoch)
        if epoch < self.warmup_epochs:
            start = self.lr * self.warmup_factor
            return start + (self.lr - start) * epoch / self.warmup_epochs
        return self._main(epoch - self.warmup_epochs, step - self.warmup_epochs * self.steps_per_epoch)

    def _main(self, epoch: float, step: int) -> float:
        """The schedule after the warm-up, at ``epoch`` (``step``) counted from the warm-up's end."""
        main_epochs = self.epochs - self.warmup_epochs
        if self.name == "constant":
            return self.lr
        if self.name == "cosine_decay":
            if self.decay_epochs <= 0:
                return self.min_lr
            cycle = math.floor(epoch / self.decay_epochs)
            if cycle >= self.num_cycles:
                return self.min_lr
            peak = self.lr * self.cycle_decay**cycle
            progress = (epoch - cycle * self.decay_epochs) / self.decay_epochs
            return self.min_lr + 0.5 * (peak - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        if self.name == "step_decay":
            return self.lr * self.decay_rate ** math.floor(math.floor(epoch) / max(1, self.decay_epochs))
        if self.name == "multi_step_decay":
            passed = sum(1 for milestone in self.milestones if math.floor(epoch) >= milestone)
            return self.lr * self.decay_rate**passed
        if self.name == "exponential_decay":
            return self.lr * self.decay_rate**epoch
        if self.name == "polynomial_decay":
            span = max(1, main_epochs)
            return self.lr * (1 - min(epoch, span) / span) ** self.decay_rate
        if self.name == "one_cycle":
            return self._one_cycle(step, self.steps_per_epoch * main_epochs)
        if self.name == "cyclic":
            return self._cyclic(step, self.steps_per_epoch * main_epochs)
        raise ConfigError(f"scheduler '{self.name}' is not supported")

    def _one_cycle(self, step: int, steps: int) -> float:
        """PyTorch's OneCycleLR as MindCV uses it: cosine rise from lr/25 over 30% of the steps,
        cosine fall to ``min_lr`` over the rest."""
        up = ONE_CYCLE_RISE_FRACTION * steps - 1
        if step <= up:
            begin, end, progress = self.lr / ONE_CYCLE_DIV_FACTOR, self.lr, step / up
        else:
            begin, end, progress = self.lr, self.min_lr, min(1.0, (step - up) / (steps - 1 - up))
        return end + (begin - end) / 2.0 * (math.cos(math.pi * progress) + 1)

    def _cyclic(self, step: int, steps: int) -> float:
        """Triangular cycles between ``min_lr`` and ``lr``, ``num_cycles`` of them over the run."""
        half = float(int(steps / self.num_cycles / 2))
        position = 1.0 + step / (2 * half) - math.floor(1 + step / (2 * half))
        scale = position / 0.5 if position <= 0.5 else (position - 1) / (0.5 - 1)
        return self.min_lr + (self.lr - self.min_lr) * scale

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's learning rate for ``step``; returns it."""
        value = self(step)
        for group in optimizer.param_groups:
            group["lr"] = value * group.get("lr_scale", 1.0)
        return value
