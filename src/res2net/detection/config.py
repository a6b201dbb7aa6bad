"""The flat recipe of a detection / segmentation run, on the same schema machinery as the
classification recipes (:mod:`res2net.config.flat`).

One schema covers the three dense tasks because they share everything but the model: the
``model`` key picks a builder (``fasterrcnn_res2net_fpn`` ... ``sod_res2net``) and with it the
task, and keys that the chosen model has no use for are refused rather than ignored
(``anchor_sizes`` for DeepLabV3, ``output_stride`` for a detector). Optimizer and schedule keys
keep MindCV's names and meanings (the schedule is :class:`res2net.train.schedule.LRSchedule`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..config.flat import check_device, check_keys, coerce_value, recipe_parser, recipe_yaml, specs_of, typed_values
from ..config.keys import AMP, DATASET, MODEL, OPTIMIZER, SCHEDULER, SYSTEM, VALIDATION, key
from ..errors import ConfigError

Task = Literal["detection", "instance", "semantic", "saliency"]
TASKS: dict[str, Task] = {
    "fasterrcnn_res2net_fpn": "detection",
    "retinanet_res2net_fpn": "detection",
    "maskrcnn_res2net_fpn": "instance",
    "deeplabv3_res2net": "semantic",
    "fcn_res2net": "semantic",
    "sod_res2net": "saliency",
}
SCHEDULERS = ("constant", "cosine_decay", "step_decay", "multi_step_decay", "polynomial_decay")
#: Keys that only some tasks use: key -> the tasks that read it.
_TASK_KEYS: dict[str, tuple[Task, ...]] = {
    "num_classes": ("detection", "instance", "semantic"),
    "anchor_sizes": ("detection", "instance"),
    "aspect_ratios": ("detection", "instance"),
    "min_size": ("detection", "instance"),
    "max_size": ("detection", "instance"),
    "dcn_stages": ("detection", "instance"),
    "box_batch_size_per_image": ("detection", "instance"),
    "output_stride": ("semantic",),
    "aux_loss": ("semantic",),
    "aux_weight": ("semantic",),
}


@dataclass(frozen=True)
class DetectionConfig:
    """A resolved dense-prediction recipe: defaults, then the YAML file, then flags."""

    # --- system -------------------------------------------------------------------------
    config: str = key("", "YAML recipe the values were read from (set by -c/--config)", SYSTEM)
    distribute: bool = key(False, "train with torch.distributed (under torchrun, mpirun or srun)", SYSTEM)
    device: str = key("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda or cuda:N", SYSTEM)
    seed: int = key(42, "seed for Python, NumPy and torch random generators", SYSTEM, minimum=0)
    log_interval: int = key(20, "log training losses every N steps", SYSTEM, minimum=1)
    val_interval: int = key(1, "evaluate on the validation split every N epochs (and after the last)", SYSTEM,
                            minimum=1)
    ckpt_save_dir: str = key("./runs/detection", "run folder: checkpoints, metrics.jsonl, config.yaml", SYSTEM)
    keep_checkpoint_max: int = key(3, "per-epoch checkpoints kept (newest); last.pth is always kept", SYSTEM,
                                   minimum=1)
    resume: str = key("", "'' (fresh run), 'auto' (the run folder's newest checkpoint) or a checkpoint path",
                      SYSTEM)

    # --- dataset ------------------------------------------------------------------------
    data_dir: str = key("./data/digits_detection", "COCO-style root: <split>/ images and "
                        "annotations/instances_<split>.json (semantic masks in masks/<split>/ if present)", DATASET)
    train_split: str = key("train", "training split name", DATASET)
    val_split: str = key("val", "validation split name", DATASET)
    batch_size: int = key(4, "images per process per step", DATASET, minimum=1)
    num_parallel_workers: int = key(2, "data loader worker processes per training process", DATASET, minimum=0)

    # --- model --------------------------------------------------------------------------
    model: str = key("fasterrcnn_res2net_fpn", "detector or segmenter (chooses the task)", MODEL,
                     choices=tuple(TASKS))
    backbone: str = key("res2net50_v1b", "any name from `res2net models`", MODEL)
    backbone_weights: str = key("", "weight tag of the backbone ('official', 'mindcv') or a checkpoint file in "
                                "any supported format; '' = random initialisation", MODEL)
    num_classes: int = key(11, "classes including the background (detection and semantic models; checked "
                           "against the dataset's categories)", MODEL, minimum=2)
    trainable_stages: int = key(3, "stage groups trained, counted from the last (0..5; 5 includes the stem)",
                                MODEL, minimum=0, maximum=5)
    norm: str = key("frozen", "backbone BatchNorm: frozen (FrozenBatchNorm2d), bn (trained), sync (SyncBatchNorm "
                    "across processes, CUDA)", MODEL, choices=("frozen", "bn", "sync"))
    dcn_stages: tuple[bool, ...] = key((False, False, False, False), "per stage, deformable 3x3 convolutions",
                                       MODEL)
    output_stride: int = key(16, "segmentation: backbone output stride, 8 or 16 (dilated late stages)", MODEL)
    aux_loss: bool = key(True, "segmentation: auxiliary FCN head on stage 3", MODEL)
    aux_weight: float = key(0.5, "segmentation: weight of the auxiliary loss", MODEL, minimum=0.0)
    anchor_sizes: tuple[int, ...] = key((32, 64, 128, 256, 512), "detection: anchor size per pyramid level "
                                        "(five levels)", MODEL, minimum=1)
    aspect_ratios: tuple[float, ...] = key((0.5, 1.0, 2.0), "detection: anchor aspect ratios (h/w)", MODEL,
                                           minimum=0.0, exclusive_minimum=True)
    min_size: int = key(800, "detection: images are resized so their short side is this", MODEL, minimum=1)
    max_size: int = key(1333, "detection: ... and their long side at most this", MODEL, minimum=1)
    box_batch_size_per_image: int = key(512, "detection: RoIs sampled per image for the box head loss", MODEL,
                                        minimum=1)

    # --- optimizer ----------------------------------------------------------------------
    opt: str = key("sgd", "optimizer: sgd (momentum) or adamw", OPTIMIZER, choices=("sgd", "adamw"))
    lr: float = key(0.02, "peak learning rate (torchvision's detection reference: 0.02 for 16 images)",
                    OPTIMIZER, minimum=0.0, exclusive_minimum=True)
    momentum: float = key(0.9, "SGD momentum / AdamW beta1", OPTIMIZER, minimum=0.0, maximum=1.0)
    weight_decay: float = key(1e-4, "weight decay", OPTIMIZER, minimum=0.0)
    weight_decay_filter: str = key("norm_and_bias", "parameters exempt from weight decay: disable (none), "
                                   "auto (norm layers), norm_and_bias", OPTIMIZER,
                                   choices=("disable", "auto", "norm_and_bias"))
    clip_grad: bool = key(False, "clip the global gradient norm", OPTIMIZER)
    clip_value: float = key(10.0, "maximum gradient norm when clip_grad", OPTIMIZER, minimum=0.0,
                            exclusive_minimum=True)

    # --- scheduler ----------------------------------------------------------------------
    scheduler: str = key("multi_step_decay", "learning-rate schedule after the warm-up (per step)", SCHEDULER,
                         choices=SCHEDULERS)
    epoch_size: int = key(12, "training epochs", SCHEDULER, minimum=1)
    warmup_epochs: int = key(0, "linear warm-up epochs", SCHEDULER, minimum=0)
    warmup_factor: float = key(0.001, "warm-up starts at lr x this", SCHEDULER, minimum=0.0, maximum=1.0)
    min_lr: float = key(0.0, "floor of cosine_decay", SCHEDULER, minimum=0.0)
    decay_epochs: int = key(0, "step_decay period; cosine_decay length (0: the epochs after warm-up)", SCHEDULER,
                            minimum=0)
    decay_rate: float = key(0.1, "step/multi-step factor; polynomial power", SCHEDULER, minimum=0.0)
    multi_step_decay_milestones: tuple[int, ...] = key((8, 11), "epochs at which multi_step_decay multiplies the "
                                                       "lr by decay_rate (the '1x' schedule: 8 and 11 of 12)",
                                                       SCHEDULER, minimum=0)

    # --- mixed precision / validation -----------------------------------------------------
    amp_level: str = key("O0", "O0: float32; O1/O2: autocast (bfloat16 on CPU, float16 + loss scaling on CUDA)",
                         AMP, choices=("O0", "O1", "O2"))
    score_threshold: float = key(0.05, "detection: boxes scored below this are dropped before evaluation",
                                 VALIDATION, minimum=0.0, maximum=1.0)

    provided: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    @property
    def task(self) -> Task:
        return TASKS[self.model]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "the config") -> DetectionConfig:
        """Validate a flat mapping (e.g. the config saved in a checkpoint)."""
        where = f"in {source}"
        checked = check_keys(cls, values, source)
        return build_detection_config({n: coerce_value(cls, n, raw, where) for n, raw in checked.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values of every key the model uses (those it does not use are left out, so the
        dict reads back through :meth:`from_dict`)."""
        return {n: list(v) if isinstance(v := getattr(self, n), tuple) else v for n in specs_of(DetectionConfig)
                if self.task in _TASK_KEYS.get(n, (self.task,)) and not self._one_stage_skips(n)}

    def to_yaml(self) -> str:
        """The resolved recipe as YAML, the run folder's ``config.yaml``."""
        return recipe_yaml(self.to_dict())

    def _one_stage_skips(self, name: str) -> bool:
        return self.model == "retinanet_res2net_fpn" and name == "box_batch_size_per_image"


def build_detection_config(typed: Mapping[str, Any]) -> DetectionConfig:
    """Cross-key checks on already-typed values: what a model does not read is refused."""
    cfg = DetectionConfig(**typed, provided=frozenset(typed))
    for name, tasks in _TASK_KEYS.items():
        if name in cfg.provided and cfg.task not in tasks:
            raise ConfigError(f"config key '{name}' does not apply to {cfg.model} (a {cfg.task} model); remove it")
    if cfg.model == "retinanet_res2net_fpn" and "box_batch_size_per_image" in cfg.provided:
        raise ConfigError("config key 'box_batch_size_per_image' does not apply to retinanet_res2net_fpn "
                          "(a one-stage detector samples no RoIs); remove it")
    if cfg.task in ("detection", "instance") and len(cfg.anchor_sizes) != 5:
        raise ConfigError(f"config key 'anchor_sizes' needs one size per pyramid level (5), got {cfg.anchor_sizes}")
    if len(cfg.dcn_stages) != 4:
        raise ConfigError(f"config key 'dcn_stages' needs one flag per stage (4), got {cfg.dcn_stages}")
    if cfg.output_stride not in (8, 16):
        raise ConfigError(f"config key 'output_stride' must be 8 or 16, got {cfg.output_stride}")
    if cfg.min_size > cfg.max_size:
        raise ConfigError(f"config keys 'min_size' ({cfg.min_size}) must not exceed 'max_size' ({cfg.max_size})")
    if cfg.warmup_epochs >= cfg.epoch_size and cfg.warmup_epochs:
        raise ConfigError(f"config key 'warmup_epochs' ({cfg.warmup_epochs}) must be below epoch_size "
                          f"({cfg.epoch_size})")
    check_device(cfg.device)
    if cfg.resume not in ("", "auto") and not cfg.resume.endswith((".pth", ".pt")):
        raise ConfigError(f"config key 'resume' expects '', 'auto' or a .pth checkpoint path, got {cfg.resume!r}")
    return cfg


def load_detection_config(argv: list[str], prog: str = "res2net train-detection") -> DetectionConfig:
    """``-c recipe.yaml --key value ...`` into a validated DetectionConfig."""
    parser = recipe_parser(DetectionConfig, prog, "Train or evaluate a Res2Net detector or segmenter from a "
                           "flat YAML recipe.")
    return build_detection_config(typed_values(DetectionConfig, parser, argv))
