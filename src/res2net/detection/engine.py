"""Training a detector or segmenter from a :class:`DetectionConfig` recipe.

The loop is the classification trainer's in miniature, on the same parts: torch.distributed
through :func:`res2net.distributed.init_distributed` (torchrun, mpirun, srun; DDP with NCCL or
Gloo), MindCV-named learning-rate schedules applied per step, the run's CheckpointManager
(atomic writes, ``resume: auto``), and the run logger (metrics.jsonl / csv, TensorBoard). The
losses are the models' own (torchvision's detectors return theirs), cross-entropy with
torchvision's 0.5-weighted auxiliary head for segmentation, BCE + IoU for saliency.
Sampling is a seeded DistributedSampler (one replica when alone), so a resumed run sees the
same images in the same order as an uninterrupted one. Evaluation runs on rank 0 over the
whole validation split; the other ranks wait.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ..distributed import DistContext, barrier, init_distributed, shutdown
from ..errors import CheckpointError, ConfigError
from ..plots import write_curves
from ..provenance import environment
from ..segmentation.models import saliency_loss
from ..train.checkpoints import CheckpointManager, find_resume_checkpoint
from ..train.engine import restore_rng_states, rng_states, seed_everything, unwrap
from ..train.logger import RunLogger
from ..train.optim import param_groups
from ..train.schedule import LRSchedule
from ..train.step import DivergedError
from .builders import build_by_name, builder_kwargs
from .checkpoint import DenseCheckpoint, read_dense_checkpoint
from .config import DetectionConfig
from .data import CocoDenseDataset, collate_detection
from .evaluate import autocast_for, evaluate_dense

IGNORE_INDEX = 255


@dataclass
class DenseResult:
    epochs: int
    metrics: dict[str, Any]
    checkpoint: Path | None
    run_dir: Path


class DenseTrainer:
    """One run's objects; :meth:`fit` trains the remaining epochs."""

    def __init__(self, cfg: DetectionConfig) -> None:
        self.cfg = cfg
        self.ctx: DistContext = init_distributed(cfg.distribute, cfg.device)
        seed_everything(cfg.seed + self.ctx.rank)
        self.run_dir = Path(cfg.ckpt_save_dir)
        self.logger = RunLogger(self.run_dir, enabled=self.ctx.is_main, log_interval=cfg.log_interval)
        self.provenance = environment()
        self.train_set = CocoDenseDataset(Path(cfg.data_dir), cfg.train_split)
        self.val_set = CocoDenseDataset(Path(cfg.data_dir), cfg.val_split)
        classes = self.train_set.num_classes
        if cfg.task != "saliency" and cfg.num_classes != classes:
            raise ConfigError(f"config key 'num_classes: {cfg.num_classes}' does not fit {cfg.data_dir}: its "
                              f"{len(self.train_set.categories)} categories plus the background make {classes}")
        self.kwargs = builder_kwargs(cfg, classes)
        if cfg.norm == "sync" and not (self.ctx.distributed and self.ctx.device.type == "cuda"):
            self.logger.info("note: norm 'sync' (SyncBatchNorm) needs CUDA under torch.distributed; training "
                             "with per-process BatchNorm ('bn')")
            self.kwargs["norm"] = "bn"
        self.model = build_by_name(cfg.model, self.kwargs).to(self.ctx.device)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                          shuffle=True, seed=cfg.seed)
        self.loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.num_parallel_workers, collate_fn=collate_detection,
                                 persistent_workers=cfg.num_parallel_workers > 0)
        self.optimizer = self._optimizer()
        self.schedule = LRSchedule(
            name=cfg.scheduler, lr=cfg.lr, min_lr=cfg.min_lr, steps_per_epoch=len(self.loader),
            epochs=cfg.epoch_size, warmup_epochs=cfg.warmup_epochs, warmup_factor=cfg.warmup_factor,
            decay_epochs=cfg.decay_epochs or cfg.epoch_size - cfg.warmup_epochs, decay_rate=cfg.decay_rate,
            milestones=cfg.multi_step_decay_milestones,
        )
        self.amp = cfg.amp_level != "O0"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.ctx.device.type == "cuda")
        self.manager = CheckpointManager(self.run_dir, cfg.model, "latest_k", cfg.keep_checkpoint_max)
        self.epoch = 0
        self.step = 0
        self._resume()
        self.wrapped: nn.Module = self.model
        if self.ctx.distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids)

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups = param_groups(self.model, cfg.weight_decay, cfg.weight_decay_filter)
        if cfg.opt == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))

    def _resume(self) -> None:
        cfg = self.cfg
        if not cfg.resume:
            return
        if cfg.resume == "auto":
            found = find_resume_checkpoint(self.run_dir, cfg.model, read_dense_checkpoint)
            if found is None:
                self.logger.info(f"resume: auto found no checkpoint in {self.run_dir}; starting fresh")
                return
            path, checkpoint = found
        else:
            path = Path(cfg.resume)
            checkpoint = read_dense_checkpoint(path)
        if checkpoint.builder != cfg.model:
            raise CheckpointError(f"{path} was trained as {checkpoint.builder}, the recipe builds {cfg.model}")
        self.model.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        if checkpoint.scaler:
            self.scaler.load_state_dict(checkpoint.scaler)
        if checkpoint.rng:
            restore_rng_states(checkpoint.rng)
        self.epoch, self.step = checkpoint.epoch, checkpoint.step
        self.logger.info(f"resumed from {path}: epoch {self.epoch}, step {self.step}")

    def _loss(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        device, task = self.ctx.device, self.cfg.task
        if task in ("detection", "instance"):
            keys = ("boxes", "labels", "masks") if task == "instance" else ("boxes", "labels")
            moved = [{k: t[k].to(device) for k in keys} for t in targets]
            losses: dict[str, torch.Tensor] = self.wrapped([image.to(device) for image in images], moved)
            return losses
        batch = torch.stack(images).to(device)
        outputs = self.wrapped(batch)
        if task == "semantic":
            truth = torch.stack([t["semantic"] for t in targets]).to(device)
            parts = {"loss_out": F.cross_entropy(outputs["out"].float(), truth, ignore_index=IGNORE_INDEX)}
            if "aux" in outputs:
                aux = F.cross_entropy(outputs["aux"].float(), truth, ignore_index=IGNORE_INDEX)
                parts["loss_aux"] = self.cfg.aux_weight * aux
            return parts
        truth = torch.stack([t["saliency"] for t in targets]).to(device)
        return {"loss_saliency": saliency_loss(outputs["out"].float(), truth)}

    def _train_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        self.sampler.set_epoch(self.epoch)
        self.wrapped.train()
        sums: dict[str, float] = {}
        count = 0
        lr = self.schedule(self.step)

        def status() -> str:
            return f"loss {sums.get('loss', 0.0) / max(1, count):.4f} lr {lr:.5f}"

        description = f"epoch {self.epoch + 1}/{cfg.epoch_size}"
        for images, targets in self.logger.progress(self.loader, total=len(self.loader), description=description,
                                                    status=status):
            lr = self.schedule.apply(self.optimizer, self.step)
            with autocast_for(self.ctx.device, self.amp):
                parts = self._loss(images, targets)
            loss = sum(parts.values())
            if not torch.isfinite(loss):
                raise DivergedError(f"the loss became {float(loss)} at step {self.step}; lower lr or enable "
                                    "clip_grad (no checkpoint was overwritten)")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_value)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            count += 1
            for name, value in {"loss": loss, **parts}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        return {"lr": lr, **{name: total / max(1, count) for name, total in sums.items()}}

    def fit(self) -> DenseResult:
        cfg = self.cfg
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.manager.remove_partial_writes()
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml())
            (self.run_dir / "env.json").write_text(json.dumps(self.provenance, indent=1) + "\n")
        self.logger.info(f"training {cfg.model} ({cfg.backbone}) on {len(self.train_set)} images, "
                         f"{len(self.loader)} steps per epoch, {self.ctx.world_size} process(es) on {self.ctx.device}")
        metrics: dict[str, Any] = {}
        checkpoint_path: Path | None = None
        while self.epoch < cfg.epoch_size:
            losses = self._train_epoch()
            self.epoch += 1
            metrics = {"epoch": self.epoch, "step": self.step, **losses}
            if self.epoch % cfg.val_interval == 0 or self.epoch == cfg.epoch_size:
                if self.ctx.is_main:
                    metrics |= _scalars(evaluate_dense(self.model, cfg.task, self.val_set, self.ctx.device,
                                                       batch_size=cfg.batch_size, amp=self.amp))
                barrier(self.ctx)
            if self.ctx.is_main:
                checkpoint_path = self.manager.save(self._checkpoint(metrics), steps_per_epoch=len(self.loader),
                                                    top1=None)
                self.logger.log_metrics(self.step, metrics)
                self.logger.info(_format(metrics))
                write_curves(self.run_dir)
        self.logger.close()
        shutdown(self.ctx)
        return DenseResult(self.epoch, metrics, checkpoint_path, self.run_dir)

    def _checkpoint(self, metrics: dict[str, Any]) -> DenseCheckpoint:
        return DenseCheckpoint(
            builder=self.cfg.model, builder_kwargs=self.kwargs, model=unwrap(self.model).state_dict(),
            epoch=self.epoch, step=self.step, config=self.cfg.to_dict(),
            class_names=[c.name for c in self.train_set.categories], optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(), rng=rng_states(), metrics=metrics, provenance=self.provenance,
        )


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Loggable values (per-class lists stay out of metrics.csv)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def _format(metrics: dict[str, Any]) -> str:
    shown = []
    for name, value in metrics.items():
        if isinstance(value, float):
            shown.append(f"{name} {value:.4f}" if math.isfinite(value) else f"{name} {value}")
        else:
            shown.append(f"{name} {value}")
    return ", ".join(shown)


def train_dense(cfg: DetectionConfig) -> DenseResult:
    """Train (or resume) the run described by ``cfg``; returns the last epoch's metrics."""
    return DenseTrainer(cfg).fit()
