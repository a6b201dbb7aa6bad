"""Learning-rate schedules with MindCV's names and meanings, as a function of the step.

MindCV precomputes a per-step list of learning rates; we compute the same value from
the global step instead, so nothing but the step counter needs saving to resume, and
``lr_epoch_stair`` (one value per epoch) is just rounding the epoch down. The warm-up
comes first; the main schedule counts epochs from its end, as MindCV chains them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import Config
from ..errors import ConfigError

ONE_CYCLE_START_FRACTION = 0.3
ONE_CYCLE_DIV_FACTOR = 25.0


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
        return self._main(epoch - self.warmup_epochs)

    def _main(self, epoch: float) -> float:
        span = max(1e-12, float(self.decay_epochs or (self.epochs - self.warmup_epochs)))
        if self.name == "constant":
            return self.lr
        if self.name == "cosine_decay":
            cycle = math.floor(epoch / span)
            if cycle >= self.num_cycles:
                return self.min_lr
            peak = self.lr * self.cycle_decay**cycle
            progress = (epoch - cycle * span) / span
            return self.min_lr + 0.5 * (peak - self.min_lr) * (1 + math.cos(math.pi * progress))
        if self.name == "step_decay":
            return self.lr * self.decay_rate ** math.floor(epoch / max(1, self.decay_epochs))
        if self.name == "multi_step_decay":
            passed = sum(1 for milestone in self.milestones if epoch >= milestone)
            return self.lr * self.decay_rate**passed
        if self.name == "exponential_decay":
            return self.lr * self.decay_rate ** math.floor(epoch)
        if self.name == "polynomial_decay":
            progress = min(1.0, epoch / span)
            return (self.lr - self.min_lr) * (1 - progress) ** self.decay_rate + self.min_lr
        if self.name == "one_cycle":
            total = max(1e-12, float(self.epochs - self.warmup_epochs))
            rise = ONE_CYCLE_START_FRACTION * total
            start = self.lr / ONE_CYCLE_DIV_FACTOR
            if epoch < rise:
                return start + (self.lr - start) * 0.5 * (1 - math.cos(math.pi * epoch / rise))
            progress = min(1.0, (epoch - rise) / max(1e-12, total - rise))
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.name == "cyclic":
            position = (epoch / span) % 2.0
            return self.min_lr + (self.lr - self.min_lr) * (1 - abs(position - 1.0))
        raise ConfigError(f"scheduler '{self.name}' is not supported")

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's learning rate for ``step``; returns it."""
        value = self(step)
        for group in optimizer.param_groups:
            group["lr"] = value * group.get("lr_scale", 1.0)
        return value
