"""Training: the run loop, optimizers, schedules, checkpoints and distributed set-up."""

from .engine import Trainer, TrainResult, train

__all__ = ["TrainResult", "Trainer", "train"]
