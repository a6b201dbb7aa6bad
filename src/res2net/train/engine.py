"""The training run: model, optimizer, schedule and data from a Config, then the epochs.

``train(cfg)`` is what ``python train.py`` and ``res2net train`` call. It resumes
exactly (weights, optimizer, scaler, EMA, step counter, RNG states and the data order
all come back from the checkpoint), validates every ``val_interval`` epochs, and
checkpoints through :class:`CheckpointManager` on rank 0 only.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..checkpoint import HeadReinitialisedWarning
from ..checkpoint.training import TrainingCheckpoint, read_training_checkpoint, recipe_pretrained_cfg
from ..config import Config, amp_level_note, amp_plan, ignored_key_notes
from ..cpu_training import accelerate_cpu_training, load_kernels
from ..cpu_training.host_memory import host_memory_label, retain_freed_memory
from ..distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown
from ..errors import CheckpointError, DataError
from ..factory import create_model
from ..metrics import EvalResult, evaluate
from ..plots import PLOT_EXTRA, plotting_available, write_curves
from ..provenance import environment
from .checkpoints import CheckpointManager, find_resume_checkpoint
from .data_setup import TrainData, build_train_data
from .logger import RunLogger
from .optim import build_optimizer
from .schedule import LRSchedule
from .step import DivergedError, StepRunner


@dataclass
class TrainResult:
    """What a finished run reports (rank 0 has the authoritative values)."""

    epochs: int
    best_top1: float | None
    final: EvalResult | None
    checkpoint: Path | None
    run_dir: Path


@dataclass
class RunState:
    """Everything that changes while training and must survive a restart."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    best_top1: float | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """Every generator's state as tensors and plain containers, so checkpoints load with
    ``torch.load(weights_only=True)`` (no arbitrary unpickling)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP and torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


class Trainer:
    """Holds one run's objects; ``fit`` runs the remaining epochs."""

    def __init__(self, cfg: Config, ctx: DistContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        # Before the first big tensor: on CPU every step would otherwise fault its maps in afresh.
        self.retains_host_memory = ctx.device.type == "cpu" and cfg.host_memory == "retain" and retain_freed_memory()
        self.run_dir = Path(cfg.ckpt_save_dir)
        self.logger = RunLogger(self.run_dir, enabled=ctx.is_main, log_interval=cfg.log_interval)
        self.cpu_kernels_label = "not used"
        self.start_label = "random initialisation"
        self.provenance = environment()
        seed_everything(cfg.seed)
        self.data: TrainData = build_train_data(cfg, ctx)
        self.num_classes = self.data.num_classes
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, cfg)
        self.schedule = LRSchedule.from_config(cfg, self.data.steps_per_epoch)
        self.train_amp = amp_plan(cfg, ctx.device.type)
        self.val_amp = amp_plan(cfg, ctx.device.type, validation=True)
        self.scaler = torch.amp.GradScaler(ctx.device.type, **self.train_amp.scaler_kwargs())
        self.ema = (
            AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
            if cfg.ema
            else None
        )
        self.state = RunState()
        self.nonfinite_streak = 0  # non-finite losses that ended the last epoch, summed over ranks
        self._restore()
        self.train_model = self._wrap(self._cpu_training_copy(self.model))
        self.checkpoints = CheckpointManager(self.run_dir, cfg.model, cfg.ckpt_save_policy, cfg.keep_checkpoint_max)
        self.runner = StepRunner(
            self.train_model,
            self.optimizer,
            self.scaler,
            device=ctx.device,
            amp_dtype=self.train_amp.dtype,
            loss_kind=cfg.loss,
            label_smoothing=cfg.label_smoothing,
            reduction=cfg.reduction,
            accumulation_steps=cfg.gradient_accumulation_steps,
            clip_norm=cfg.clip_value if cfg.clip_grad else None,
        )

    # --- set-up -------------------------------------------------------------------------
    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        model, reinitialised = create_model_noting_head(
            cfg.model,
            pretrained=cfg.pretrained,
            checkpoint_path=cfg.ckpt_path or None,
            num_classes=self.num_classes,
            in_chans=cfg.in_channels,
            drop_rate=cfg.drop_rate or 0.0,
            drop_path_rate=cfg.drop_path_rate or 0.0,
        )
        if cfg.ckpt_path or cfg.pretrained:
            source = cfg.ckpt_path or f"the {model.pretrained_cfg.tag} weights of {model.pretrained_cfg.architecture}"
            head = f"classifier re-initialised for {self.num_classes} classes" if reinitialised else "classifier kept"
            self.start_label = f"{source} ({head})"
        self.frozen_modules = model.first_stage_modules(cfg.freeze_stages)
        for name in self.frozen_modules:
            model.get_submodule(name).requires_grad_(False)
        if self.ctx.distributed and cfg.sync_bn:
            if self.ctx.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                self.logger.info(f"note: sync_bn needs CUDA (SyncBatchNorm); each process keeps its own BatchNorm "
                                 f"statistics on {self.ctx.device}")
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        return model.to(self.ctx.device, memory_format=memory_format)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids)
        if self.cfg.compile:
            model = torch.compile(model)  # type: ignore[assignment]
        return model

    def _restore(self) -> None:
        """``resume`` (ours) or MindCV's ``ckpt_path`` + ``resume_opt``."""
        cfg = self.cfg
        found: tuple[Path, TrainingCheckpoint] | None = None
        if cfg.resume == "auto":
            found = find_resume_checkpoint(self.run_dir, cfg.model)
            if found is None:
                self.logger.info(f"resume auto: no checkpoint in {self.run_dir}, starting from scratch")
        elif cfg.resume:
            found = (Path(cfg.resume), read_training_checkpoint(Path(cfg.resume)))
        elif cfg.ckpt_path and cfg.resume_opt:
            found = (Path(cfg.ckpt_path), read_training_checkpoint(Path(cfg.ckpt_path)))
        if found is None:
            return
        path, saved = found
        try:
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            self.scaler.load_state_dict(saved.scaler)
            if self.ema is not None and saved.model_ema is not None:
                self.ema.module.load_state_dict(saved.model_ema)
                self.ema.n_averaged.fill_(saved.ema_updates)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {path}: it does not match this run ({exc})") from None
        self.state = RunState(epoch=saved.epoch, step=saved.step, best_top1=saved.best_top1)
        restore_rng_states(saved.rng)
        if self.data.mixer is not None and saved.mixer is not None:
            self.data.mixer.load_state_dict(saved.mixer)
        self.logger.info(f"resumed from {path} at epoch {self.state.epoch}, step {self.state.step}")

    def _cpu_training_copy(self, model: nn.Module) -> nn.Module:
        """What the training steps run: on CPU, the training copy of :mod:`res2net.cpu_training`
        (same parameters, faster modules) as ``cpu_kernels`` says; elsewhere the model itself.
        Evaluation, EMA and checkpoints keep using the plain model. A kernel build, when asked
        for, happens here, before the first epoch, so it neither hides in epoch 1's time nor goes
        unexplained."""
        cfg = self.cfg
        if self.ctx.device.type != "cpu" or cfg.cpu_kernels == "off":
            self.cpu_kernels_label = "off" if self.ctx.device.type == "cpu" else "not used (CPU only)"
            return model
        if cfg.compile:
            self.cpu_kernels_label = "not used (compile: True generates its own kernels)"
            return model
        kernels = None
        if cfg.channels_last:
            started = time.perf_counter()
            kernels = load_kernels(build=cfg.cpu_kernels == "fused")
            if kernels is not None and time.perf_counter() - started > 1.0:
                self.logger.info(f"built the fused CPU BatchNorm kernels in {time.perf_counter() - started:.1f} s "
                                 "(once per machine and torch version; cached)")
        if kernels is not None:
            self.cpu_kernels_label = "fused BatchNorm + 1x1 GEMMs"
        elif cfg.channels_last:
            self.cpu_kernels_label = "1x1 GEMMs (fused BatchNorm not built; cpu_kernels: fused builds it)"
        else:
            self.cpu_kernels_label = "1x1 GEMMs (fused BatchNorm needs channels_last: True)"
        return accelerate_cpu_training(model, kernels=kernels)

    # --- the run ------------------------------------------------------------------------
    def summary(self) -> str:
        cfg, ctx = self.cfg, self.ctx
        params = sum(p.numel() for p in self.model.parameters())
        fields = {
            "model": f"{cfg.model} ({params / 1e6:.2f}M params, {self.num_classes} classes)",
            "world_size": ctx.world_size,
            "launcher": ctx.launcher,
            "global_batch": cfg.batch_size * ctx.world_size * cfg.gradient_accumulation_steps,
            "lr": f"{cfg.lr:g} ({cfg.scheduler}, warm-up {cfg.warmup_epochs} epochs)",
            "optimizer": cfg.opt,
            "amp": self.train_amp.describe(),
            "device": str(ctx.device),
            "host_memory": host_memory_label(self.retains_host_memory),
            "cpu_kernels": self.cpu_kernels_label,
            "weights": self.start_label,
            "frozen": ", ".join(self.frozen_modules) or "nothing",
            "train_samples": self.data.num_train,
            "val_samples": self.data.num_val,
            "epochs": cfg.epoch_size,
            "run_dir": str(self.run_dir),
        }
        return "run: " + ", ".join(f"{k}={v}" for k, v in fields.items())

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.ctx.is_main:
            curves_note = None if plotting_available() else f"note: no curves.png without matplotlib ({PLOT_EXTRA})"
            for note in [*ignored_key_notes(cfg), amp_level_note(cfg, self.ctx.device.type), *self.data.notes,
                         curves_note]:
                if note:
                    self.logger.info(note)
            self.logger.info(self.summary())
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
            (self.run_dir / "env.json").write_text(json.dumps(self.provenance, indent=1) + "\n")
            for partial in self.checkpoints.remove_partial_writes():
                self.logger.info(f"removed {partial.name}, left by a checkpoint save that was interrupted")
        final: EvalResult | None = None
        last_saved: Path | None = None
        for epoch in range(self.state.epoch, cfg.epoch_size):
            train_metrics = self._train_epoch(epoch)
            self.state.epoch = epoch + 1
            last_epoch = self.state.epoch == cfg.epoch_size
            metrics: dict[str, Any] = {"epoch": self.state.epoch, "step": self.state.step, **train_metrics}
            result: EvalResult | None = None
            if cfg.val_while_train and (self.state.epoch % cfg.val_interval == 0 or last_epoch):
                result = self.validate()
                final = result
                metrics.update({f"val_{k}": v for k, v in result.summary().items()})
                if self.state.best_top1 is None or result.top1 > self.state.best_top1:
                    self.state.best_top1 = result.top1
            self.logger.log_metrics(self.state.step, metrics)
            self.logger.info(_format_epoch(metrics))
            if self.ctx.is_main:
                write_curves(self.run_dir)
            if self.state.epoch % cfg.ckpt_save_interval == 0 or last_epoch:
                if self.nonfinite_streak:
                    self._refuse_save(last_epoch)
                else:
                    last_saved = self._save(result)
        self.logger.close()
        return TrainResult(
            epochs=self.state.epoch, best_top1=self.state.best_top1, final=final, checkpoint=last_saved,
            run_dir=self.run_dir,
        )

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.train_model.train()
        trained = unwrap(self.train_model)
        for name in self.frozen_modules:  # frozen stages keep their BatchNorm statistics
            trained.get_submodule(name).eval()
        loader = self.data.train_loader_for_epoch(epoch)
        accumulation = cfg.gradient_accumulation_steps
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
        batches = 0
        samples = 0
        started = time.perf_counter()
        self.schedule.apply(self.optimizer, self.state.step)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        description = f"epoch {epoch + 1}/{cfg.epoch_size}"

        def status() -> str:
            seconds = time.perf_counter() - started
            rate = samples * self.ctx.world_size / seconds if seconds > 0 else 0.0
            loss = loss_sum.item() / max(1, batches)
            return f"loss {loss:.4f} lr {self.optimizer.param_groups[0]['lr']:.3g} {rate:.1f} img/s"

        batches_seen = self.logger.progress(loader, total=len(loader), description=description, status=status)
        for index, batch in enumerate(batches_seen, start=1):
            if batch is None:  # every image of this batch was unreadable (counted by the dataset)
                continue
            images, targets = batch
            images = images.to(self.ctx.device, non_blocking=True).contiguous(memory_format=memory_format)
            targets = targets.to(self.ctx.device, non_blocking=True)
            images, soft_targets = self.data.mix(images, targets)
            loss_sum += self.runner.forward_backward(images, soft_targets).double()
            batches += 1
            samples += images.shape[0]
            if index % accumulation == 0 or index == len(loader):
                self.runner.optimizer_step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                self.state.step += 1
                self.schedule.apply(self.optimizer, self.state.step)
        elapsed = time.perf_counter() - started
        # Skipped images and non-finite streaks are per rank: summed so every rank (and the
        # epoch summary) sees the whole job's figures and takes the same checkpoint decision.
        local = [float(batches), float(self.data.skipped_images()), float(self.runner.consecutive_nonfinite)]
        totals = all_reduce_sum(
            torch.cat([loss_sum.view(1), torch.tensor(local, dtype=torch.float64, device=self.ctx.device)]), self.ctx
        ).tolist()
        self.nonfinite_streak = int(totals[3])
        if totals[1] == 0:  # never report an untrained model's score as a training result
            raise DataError(f"epoch {epoch + 1} made no training step: none of the {self.data.num_train} training "
                            f"images could be read into a batch ({int(totals[2])} unreadable)")
        return {
            "train_loss": round(totals[0] / max(1.0, totals[1]), 6),
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_second": round(samples * self.ctx.world_size / elapsed, 2) if elapsed > 0 else 0.0,
            "epoch_seconds": round(elapsed, 2),
            "skipped_images": int(totals[2]),
            "skipped_steps": self.runner.skipped_steps,
        }

    def validate(self) -> EvalResult:
        model = self.ema.module if self.ema is not None else self.model
        return evaluate(
            model,
            self.data.val_batches(),
            num_classes=self.num_classes,
            ctx=self.ctx,
            amp_dtype=self.val_amp.dtype,
            channels_last=self.cfg.channels_last,
        )

    def _refuse_save(self, last_epoch: bool) -> None:
        """Keep the previous checkpoints when the current weights have just produced NaN/Inf.

        Non-finite steps are never applied, but a huge finite update (an lr far too high)
        can leave finite weights that only produce NaN from then on; saving those would
        replace the last good ``last.pth``. A final epoch in that state ends the run.
        """
        message = (f"epoch {self.state.epoch} ended with {self.nonfinite_streak} NaN/Inf losses in a row; "
                   "its checkpoint was not written and the previous checkpoints were kept")
        if last_epoch:
            raise DivergedError(f"{message}. Lower lr, enable clip_grad, or use amp_level O0")
        self.logger.info(f"warning: {message}")

    def _save(self, result: EvalResult | None) -> Path | None:
        path = None
        if self.ctx.is_main:
            config = self.cfg.to_dict()
            metrics = result.summary() if result is not None else None
            checkpoint = TrainingCheckpoint(
                model_name=self.cfg.model,
                model=self.model.state_dict(),
                model_ema=self.ema.module.state_dict() if self.ema is not None else None,
                ema_updates=int(self.ema.n_averaged.item()) if self.ema is not None else 0,
                optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict(),
                schedule=dataclasses.asdict(self.schedule),
                epoch=self.state.epoch,
                step=self.state.step,
                best_top1=self.state.best_top1,
                rng=rng_states(),
                config=config,
                class_names=self.data.class_names,
                pretrained_cfg=recipe_pretrained_cfg(self.cfg.model, config, self.data.class_names, metrics,
                                                     self.provenance).to_dict(),
                mixer=self.data.mixer.state_dict() if self.data.mixer is not None else None,
                metrics=metrics,
                provenance=self.provenance,
            )
            path = self.checkpoints.save(
                checkpoint, steps_per_epoch=self.data.steps_per_epoch, top1=result.top1 if result is not None else None
            )
        barrier(self.ctx)
        return path


def create_model_noting_head(name: str, **kwargs: Any) -> tuple[nn.Module, bool]:
    """``create_model``, and whether it re-initialised the checkpoint's classifier for other classes
    (fine-tuning), which the run line then says instead of the warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HeadReinitialisedWarning)
        model = create_model(name, **kwargs)
    reinitialised = False
    for warning in caught:
        if issubclass(warning.category, HeadReinitialisedWarning):
            reinitialised = True
        else:  # every other warning goes on as it came
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model, reinitialised


def _format_epoch(metrics: dict[str, Any]) -> str:
    return "epoch " + json.dumps(metrics)


def train(cfg: Config) -> TrainResult:
    """Run (or resume) training as ``cfg`` says; the entry point of ``train.py``."""
    ctx = init_distributed(cfg.distribute, cfg.device)
    try:
        return Trainer(cfg, ctx).fit()
    finally:
        shutdown(ctx)
