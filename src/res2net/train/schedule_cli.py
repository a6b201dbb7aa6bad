"""``res2net schedule -c RECIPE``: the learning rate at every step of a run, before running it.

What a user checks before a multi-day run: the warm-up length, the peak, where the decay lands
and what the last epochs get. The steps per epoch come from ``--steps_per_epoch`` or from the
recipe's training split (images // (batch_size x world size), as the loader counts them); any
recipe key can be overridden with its flag, as for ``train.py``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..config import Config, load_config
from ..errors import DataError, UserError
from .data_setup import data_source
from .schedule import LRSchedule

_EXTRA = "pip install 'res2net[plot]'"


def steps_per_epoch_of(cfg: Config, world_size: int) -> int:
    """Optimizer steps per epoch for the recipe's training split, as the loader counts them."""
    try:
        samples = data_source(cfg).count(cfg, cfg.train_split)
    except DataError as err:
        raise UserError(f"cannot count the training images ({err}); pass --steps_per_epoch N") from None
    per_step = cfg.batch_size * world_size
    batches = samples // per_step if cfg.drop_remainder else math.ceil(samples / per_step)
    return max(1, batches // cfg.gradient_accumulation_steps)


def learning_rates(cfg: Config, steps_per_epoch: int) -> list[float]:
    schedule = LRSchedule.from_config(cfg, steps_per_epoch)
    return [schedule(step) for step in range(steps_per_epoch * cfg.epoch_size)]


def plot(values: list[float], steps_per_epoch: int, title: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"--plot needs matplotlib: {_EXTRA}") from None
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.plot([step / steps_per_epoch for step in range(len(values))], values)
    axes.set_xlabel("epoch")
    axes.set_ylabel("learning rate")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", dpi=100)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        plt.close(figure)


def run_schedule(args: argparse.Namespace, recipe_flags: list[str]) -> int:
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise UserError(f"--steps-per-epoch must be at least 1, got {args.steps_per_epoch}")
    if args.world_size < 1:
        raise UserError(f"--world-size must be at least 1, got {args.world_size}")
    cfg = load_config(["-c", args.config, *recipe_flags], purpose="train")
    steps = args.steps_per_epoch or steps_per_epoch_of(cfg, args.world_size)
    values = learning_rates(cfg, steps)
    if args.plot:
        plot(values, steps, f"{Path(args.config).name}: {cfg.scheduler}, {steps} steps per epoch", Path(args.plot))
    if args.json:
        print(json.dumps(values))
        return 0
    warmup_end = min(len(values) - 1, cfg.warmup_epochs * steps)
    print(f"{args.config}: {cfg.scheduler}, {cfg.epoch_size} epochs x {steps} steps = {len(values)} steps; "
          f"lr {values[0]:.6g} at step 0, {values[warmup_end]:.6g} after the warm-up (step {warmup_end}), "
          f"peak {max(values):.6g}, {values[-1]:.6g} at the last step")
    for epoch in range(cfg.epoch_size):
        print(f"epoch {epoch + 1:4d}: {values[epoch * steps]:.6g}")
    return 0
