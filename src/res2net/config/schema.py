"""The one typed schema for training and validation recipes.

Keys, types and defaults follow MindCV 0.3.0's ``config.py`` (the parser behind its
``train.py`` and ``validate.py``), so MindCV recipe files and command lines work as they
are; the keys MindCV does not have are marked ``ours=True``. The schema is flat, like
MindCV's argparse namespace, because recipes and flags are flat; ``KeySpec.group`` keeps
the grouping for ``--help`` and for saved configs.

Defaults differ from MindCV's in one place: ``model`` defaults to ``res2net50`` (MindCV's
``mobilenet_v2_035_224`` is not a model of this project).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from res2net.data.policy import parse_policy
from res2net.data.stats import normalize_stats
from res2net.errors import ConfigError

from .flat import check_device, check_keys, coerce_value, recipe_yaml, specs_of
from .keys import AMP, AUGMENTATION, DATASET, LOSS, MODEL, OPTIMIZER, SCHEDULER, SYSTEM, VALIDATION, KeySpec, key

_AMP_LEVELS = ("O0", "O1", "O2", "O3", "auto")
#: Values of ``dataset`` that have a reader here.
DATASETS = ("imagenet", "webdataset")
#: MindCV < 0.3 boolean spellings, translated into their 0.3 key when the recipe is read:
#: old key -> (new key, {old value: new value}).
LEGACY_KEYS: dict[str, tuple[str, dict[bool, str]]] = {
    "filter_bias_and_bn": ("weight_decay_filter", {True: "norm_and_bias", False: "disable"}),
    "dynamic_loss_scale": ("loss_scale_type", {True: "dynamic", False: "fixed"}),
}
#: ``cpu_kernels`` and ``host_memory`` values (res2net.cpu_training).
CPU_KERNELS = ("auto", "fused", "off")
HOST_MEMORY = ("retain", "default")
#: Optimizers whose implementation is timm's (the ``optim`` extra): ``opt`` -> class in ``timm.optim``.
TIMM_OPTIMIZERS = {"lion": "Lion", "adan": "Adan"}


@dataclass(frozen=True)
class Config:
    """A resolved recipe: schema defaults, then the YAML file, then command-line flags.

    Frozen so that a config saved into a checkpoint is the one the run used; derive a
    changed copy with :func:`dataclasses.replace` (which skips validation: use
    :meth:`from_dict` for untrusted values).
    """

    # --- system -------------------------------------------------------------------------
    config: str = key("", "YAML recipe the values were read from (set by -c/--config)", SYSTEM)
    mode: int = key(0, "MindSpore GRAPH_MODE (0) or PYNATIVE_MODE (1)", SYSTEM, minimum=0, maximum=1,
                    ignored="MindSpore graph/pynative mode; 'compile' is the PyTorch counterpart")
    distribute: bool = key(False, "train with torch.distributed (under torchrun or mpirun)", SYSTEM)
    val_while_train: bool = key(False, "validate during training", SYSTEM)
    val_interval: int = key(1, "validate every N epochs when val_while_train", SYSTEM, minimum=1)
    log_interval: int = key(100, "log training metrics every N steps", SYSTEM, minimum=1)
    seed: int = key(42, "seed for Python, NumPy and torch random generators", SYSTEM, minimum=0)
    device_target: str = key("Ascend", "MindSpore device: Ascend, GPU or CPU", SYSTEM,
                             ignored="MindSpore device; 'device' picks the torch device")
    device: str = key("auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda or cuda:N", SYSTEM,
                      ours=True)
    compile: bool = key(False, "wrap the model in torch.compile", SYSTEM, ours=True)
    channels_last: bool = key(True, "keep images and weights in channels_last memory format (faster)", SYSTEM,
                              ours=True)
    sync_bn: bool = key(False, "convert BatchNorm to SyncBatchNorm when distributed", SYSTEM, ours=True)
    cpu_kernels: str = key(
        "auto", "CPU training: fused = build (about 20 s, once per machine and torch) and use the fused BatchNorm "
        "kernels; auto = use them if already built, else PyTorch's; off = the plain model (see res2net.cpu_training)",
        SYSTEM, choices=CPU_KERNELS, ours=True)
    host_memory: str = key("retain", "CPU training: retain = keep freed memory in the process (glibc), so steps do "
                           "not fault their maps in afresh; default = the allocator's own behaviour", SYSTEM,
                           choices=HOST_MEMORY, ours=True)

    # --- dataset ------------------------------------------------------------------------
    dataset: str = key("imagenet", "dataset type: 'imagenet' = ImageNet-style class folders, 'webdataset' = tar "
                       "shards from `res2net make-shards`", DATASET, choices=DATASETS)
    data_dir: str = key("./", "dataset root holding the train_split and val_split folders (webdataset: the shard "
                        "folder, or a brace pattern / URL of the shards)", DATASET)
    train_split: str = key("train", "training split folder name under data_dir", DATASET)
    val_split: str = key("val", "validation split folder name under data_dir", DATASET)
    dataset_download: bool = key(False, "download the dataset (MindCV: MNIST/CIFAR only)", DATASET,
                                 ignored="nothing is downloaded: point data_dir at ImageNet-style folders")
    num_parallel_workers: int = key(8, "data loading worker processes per device", DATASET, minimum=0)
    shuffle: bool = key(True, "shuffle the training set every epoch", DATASET)
    num_samples: int | None = key(None, "use only this many samples (None = all)", DATASET, minimum=1)
    batch_size: int = key(128, "images per device per step", DATASET, minimum=1)
    drop_remainder: bool = key(True, "drop the last incomplete training batch", DATASET)
    eval_shuffle: bool = key(False, "shuffle the validation set", DATASET,
                             ignored="validation order does not change its metrics")

    # --- augmentation -------------------------------------------------------------------
    image_resize: int = key(224, "training crop / validation image size in pixels", AUGMENTATION, minimum=1)
    scale: tuple[float, float] = key((0.08, 1.0), "RandomResizedCrop area range", AUGMENTATION,
                                     minimum=0.0, exclusive_minimum=True)
    ratio: tuple[float, float] = key((0.75, 1.333), "RandomResizedCrop aspect-ratio range", AUGMENTATION,
                                     minimum=0.0, exclusive_minimum=True)
    hflip: float = key(0.5, "horizontal flip probability", AUGMENTATION, minimum=0.0, maximum=1.0)
    vflip: float = key(0.0, "vertical flip probability", AUGMENTATION, minimum=0.0, maximum=1.0)
    color_jitter: float | None = key(0.4, "brightness/contrast/saturation jitter strength (None = off)",
                                     AUGMENTATION, minimum=0.0)
    interpolation: str = key(
        "bilinear", "resize interpolation (torchvision name; MindSpore names accepted)", AUGMENTATION,
        choices=("bilinear", "bicubic", "nearest", "nearest-exact", "box", "hamming", "lanczos"),
        aliases=(("linear", "bilinear"), ("cubic", "bicubic"), ("pilcubic", "bicubic"), ("area", "box"),
                 ("antialias", "lanczos")),
    )
    auto_augment: str | None = key(
        None, "policy string, e.g. randaug-m9-mstd0.5, autoaug, 3a, trivialaugwide, augmix (None = off)",
        AUGMENTATION, check=parse_policy,
    )
    aug_splits: int = key(0, "augmentation splits for AugMix/JSD loss; only 0 (off) is supported", AUGMENTATION,
                          refused="AugMix splits (split BatchNorm + JSD loss) are not implemented; "
                          "auto_augment: augmix-... runs AugMix on every image without splits")
    re_prob: float = key(0.0, "random erasing probability", AUGMENTATION, minimum=0.0, maximum=1.0)
    re_scale: tuple[float, float] = key((0.02, 0.33), "random erasing area range", AUGMENTATION,
                                        minimum=0.0, exclusive_minimum=True)
    re_ratio: tuple[float, float] = key((0.3, 3.3), "random erasing aspect-ratio range", AUGMENTATION,
                                        minimum=0.0, exclusive_minimum=True)
    re_value: float | str | tuple[float, ...] = key(
        0.0, "random erasing fill: a number, 'random', or one value per channel", AUGMENTATION, minimum=0.0)
    re_max_attempts: int = key(10, "random erasing: tries to draw a box that fits before leaving the image as it is",
                               AUGMENTATION, minimum=1)
    mean: tuple[float, ...] = key((0.485 * 255, 0.456 * 255, 0.406 * 255),
                                  "per-channel mean, on MindCV's 0-255 scale or 0-1", AUGMENTATION,
                                  minimum=0.0)
    std: tuple[float, ...] = key((0.229 * 255, 0.224 * 255, 0.225 * 255),
                                 "per-channel std, on MindCV's 0-255 scale or 0-1", AUGMENTATION,
                                 minimum=0.0, exclusive_minimum=True)
    crop_pct: float = key(0.875, "validation centre-crop fraction (resize to image_resize / crop_pct)",
                          AUGMENTATION, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    mixup: float = key(0.0, "mixup Beta(alpha, alpha) parameter (0 = off)", AUGMENTATION, minimum=0.0)
    cutmix: float = key(0.0, "cutmix Beta(alpha, alpha) parameter (0 = off)", AUGMENTATION, minimum=0.0)
    cutmix_prob: float = key(1.0, "probability of applying mixup/cutmix to a batch", AUGMENTATION,
                             minimum=0.0, maximum=1.0)
    aug_repeats: int = key(0, "repeated augmentation count (0 or 1 = off, 3 is common)", AUGMENTATION,
                           minimum=0)

    # --- model --------------------------------------------------------------------------
    model: str = key("res2net50", "model name (see `res2net models`)", MODEL)
    num_classes: int | None = key(None, "classes of the head (None = number of class folders)", MODEL,
                                  minimum=1)
    in_channels: int = key(3, "input image channels", MODEL, minimum=1)
    drop_rate: float | None = key(None, "dropout before the classifier (None = model default)", MODEL,
                                  minimum=0.0, maximum=1.0)
    drop_path_rate: float | None = key(None, "stochastic depth rate (None = model default)", MODEL,
                                       minimum=0.0, maximum=1.0)
    pretrained: bool = key(False, "start from the model's published weights", MODEL)
    ckpt_path: str = key("", "weights to start from (train) or to evaluate (validate)", MODEL)
    resume_opt: bool = key(False, "with ckpt_path: also restore optimizer, scheduler and epoch", MODEL)
    resume: str = key("", "continue a run: '' (no), 'auto' (latest in ckpt_save_dir) or a checkpoint path",
                      MODEL, ours=True)
    keep_checkpoint_max: int = key(10, "checkpoints kept by ckpt_save_policy", MODEL, minimum=1)
    ckpt_save_dir: str = key("./ckpt", "run folder: checkpoints, metrics, TensorBoard events, config", MODEL)
    ckpt_save_interval: int = key(1, "save a checkpoint every N epochs", MODEL, minimum=1)
    ckpt_save_policy: str | None = key("latest_k", "keep the latest_k or the top_k (by val top-1); None = all",
                                       MODEL, choices=("latest_k", "top_k"))
    epoch_size: int = key(90, "number of training epochs", MODEL, minimum=1)
    dataset_sink_mode: bool = key(True, "MindSpore dataset sink mode", MODEL,
                                  ignored="MindSpore dataset sink mode")
    ema: bool = key(False, "keep an exponential moving average of the weights", MODEL)
    ema_decay: float = key(0.9999, "EMA decay per step", MODEL, minimum=0.0, maximum=1.0)
    clip_grad: bool = key(False, "clip the global gradient norm to clip_value", MODEL)
    clip_value: float = key(15.0, "maximum gradient norm when clip_grad", MODEL, minimum=0.0,
                            exclusive_minimum=True)
    freeze_stages: int = key(0, "fine-tuning: keep the first N of the model's 5 stage groups (stem, then the 4 stages) "
                             "fixed: no gradients, BatchNorm statistics frozen", MODEL, minimum=0, maximum=5,
                             ours=True)
    layer_decay: float | None = key(None, "layer-wise learning-rate decay (None = off)", MODEL,
                                    minimum=0.0, maximum=1.0, exclusive_minimum=True)
    gradient_accumulation_steps: int = key(1, "accumulate gradients over N batches per update", MODEL,
                                           minimum=1)

    # --- optimizer ----------------------------------------------------------------------
    opt: str = key("adam", "optimizer (lion and adan: timm's implementations, the 'optim' extra)", OPTIMIZER,
                   choices=("sgd", "momentum", "nesterov", "adam", "adamw", "lion", "nadam", "adan", "rmsprop",
                            "adagrad", "lamb"))
    momentum: float = key(0.9, "momentum (SGD/RMSprop) or beta1", OPTIMIZER, minimum=0.0)
    weight_decay: float = key(1e-6, "weight decay", OPTIMIZER, minimum=0.0)
    use_nesterov: bool = key(False, "Nesterov momentum for momentum/sgd", OPTIMIZER)
    weight_decay_filter: str = key("disable", "parameters exempt from weight decay", OPTIMIZER,
                                   choices=("disable", "auto", "norm_and_bias"))
    filter_bias_and_bn: bool | None = key(
        None, "MindCV < 0.3 spelling: True = weight_decay_filter norm_and_bias, False = disable", OPTIMIZER)
    eps: float = key(1e-10, "optimizer epsilon", OPTIMIZER, minimum=0.0, exclusive_minimum=True)

    # --- scheduler ----------------------------------------------------------------------
    scheduler: str = key("cosine_decay", "learning-rate schedule", SCHEDULER,
                         choices=("constant", "cosine_decay", "warmup_cosine_decay", "exponential_decay",
                                  "polynomial_decay", "step_decay", "multi_step_decay", "one_cycle", "cyclic"))
    lr: float = key(0.001, "peak learning rate (for the global batch the recipe was written for)", SCHEDULER,
                    minimum=0.0, exclusive_minimum=True)
    min_lr: float = key(1e-6, "lowest learning rate the schedule decays to", SCHEDULER, minimum=0.0)
    warmup_epochs: int = key(3, "linear warm-up epochs", SCHEDULER, minimum=0)
    warmup_factor: float = key(0.0, "warm-up starts at lr * warmup_factor", SCHEDULER, minimum=0.0, maximum=1.0)
    decay_epochs: int = key(100, "epochs of decay (cosine) or between decays (step)", SCHEDULER, minimum=0)
    decay_rate: float = key(0.9, "lr multiplier at each decay (step/multi_step/exponential)", SCHEDULER,
                            minimum=0.0)
    multi_step_decay_milestones: tuple[int, ...] = key((30, 60, 90), "epochs at which multi_step_decay decays",
                                                       SCHEDULER, minimum=0)
    lr_epoch_stair: bool = key(False, "change lr once per epoch instead of every step", SCHEDULER)
    num_cycles: int = key(1, "cosine/cyclic cycles", SCHEDULER, minimum=1)
    cycle_decay: float = key(1.0, "peak-lr multiplier from one cycle to the next", SCHEDULER, minimum=0.0,
                             exclusive_minimum=True)

    # --- loss ---------------------------------------------------------------------------
    loss: str = key("CE", "CE (cross-entropy) or BCE (binary cross-entropy)", LOSS, choices=("CE", "BCE"))
    label_smoothing: float = key(0.0, "label smoothing", LOSS, minimum=0.0, maximum=1.0)
    aux_factor: float = key(0.0, "weight of auxiliary-head losses", LOSS, minimum=0.0,
                            ignored="Res2Net has no auxiliary head, so there is no auxiliary loss to weight")
    reduction: str = key("mean", "loss reduction over the batch: mean or sum ('none' cannot train)", LOSS,
                         choices=("mean", "sum", "none"))

    # --- mixed precision ----------------------------------------------------------------
    amp_level: str = key("O0", "O0 = fp32; O1/O2/O3/auto = torch.autocast", AMP, choices=_AMP_LEVELS)
    val_amp_level: str = key("O0", "amp_level used for validation", AMP, choices=_AMP_LEVELS)
    amp_dtype: str = key("auto", "autocast dtype: auto (bfloat16 on CPU, float16 on CUDA), float16, bfloat16",
                         AMP, choices=("auto", "float16", "bfloat16"),
                         aliases=(("fp16", "float16"), ("bf16", "bfloat16")), ours=True)
    amp_cast_list: str | None = key(None, "MindSpore cell list cast to fp16", AMP,
                                    ignored="torch.autocast chooses the precision per operator")
    loss_scale_type: str = key("fixed", "fp16 loss scaling: fixed, dynamic or auto", AMP,
                               choices=("fixed", "dynamic", "auto"))
    loss_scale: float = key(1.0, "(initial) fp16 loss scale", AMP, minimum=1.0)
    dynamic_loss_scale: bool | None = key(
        None, "MindCV < 0.3 spelling: True = loss_scale_type dynamic, False = fixed", AMP)
    drop_overflow_update: bool = key(
        False, "skip the update when gradients overflow", AMP,
        ignored="torch's GradScaler always skips steps whose fp16 gradients overflow")

    # --- validation ---------------------------------------------------------------------
    per_class_csv: str = key("", "validate: also write per-class accuracy to this CSV file", VALIDATION,
                             ours=True)
    confusion_matrix: str = key("", "validate: also draw the row-normalised confusion matrix, with the class names, "
                                "into this PNG file (matplotlib: the plot extra)", VALIDATION, ours=True)
    precision: str = key("eager", "validate: eager model (with val_amp_level), or the optimised inference path "
                         "in fp32, bf16 or int8 (see res2net.optimize_for_inference)",
                         VALIDATION, choices=("eager", "fp32", "bf16", "int8"), ours=True)
    use_ema: bool = key(False, "validate: evaluate the EMA weights of a training checkpoint", VALIDATION, ours=True)
    calibration_dir: str = key("", "validate --precision int8: folder of calibration images ('' = a seeded sample "
                               "of the train split)", VALIDATION, ours=True)
    calibration_images: int = key(32, "validate --precision int8: how many calibration images to draw", VALIDATION,
                                  minimum=1, ours=True)

    # Keys the user set explicitly (file or command line); not a recipe key.
    provided: frozenset[str] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "the config") -> Config:
        """Validate a flat mapping (e.g. a config saved in a checkpoint) and build a Config.

        ``source`` names where the values came from in error messages.
        """
        where = f"in {source}"
        typed = {name: coerce_key(name, raw, where) for name, raw in check_mapping(values, source).items()}
        return build(typed)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe values (lists, not tuples) for every schema key, in schema order."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in schema_keys()}

    def to_yaml(self) -> str:
        """The resolved recipe as YAML that :func:`load_config` reads back to an equal Config."""
        return recipe_yaml(self.to_dict())


def key_specs() -> dict[str, tuple[KeySpec, Any]]:
    """Every recipe key with its :class:`KeySpec` and Python type, in schema order."""
    return specs_of(Config)


def schema_keys() -> tuple[str, ...]:
    """Names of all recipe keys, in schema order."""
    return tuple(key_specs())


def coerce_key(name: str, raw: Any, where: str) -> Any:
    """Type-convert and check one value for key ``name`` (which must be a schema key)."""
    return coerce_value(Config, name, raw, where)


def build(typed: Mapping[str, Any]) -> Config:
    """Apply legacy spellings and cross-key checks to already-typed values and make the Config."""
    values = dict(typed)
    for old, (new, meaning) in LEGACY_KEYS.items():
        _apply_legacy(values, old, new, meaning)
    cfg = Config(**values, provided=frozenset(typed))
    for name, (spec, _) in key_specs().items():
        if spec.refused and getattr(cfg, name) != Config.__dataclass_fields__[name].default:
            raise ConfigError(f"config key '{name}: {getattr(cfg, name)}' is not supported: {spec.refused}")
    for pair in ("scale", "ratio", "re_scale", "re_ratio"):
        low, high = getattr(cfg, pair)
        if low > high:
            raise ConfigError(f"config key '{pair}' must be [low, high] with low <= high, got [{low}, {high}]")
    try:
        normalize_stats(cfg.mean, cfg.std)
    except ValueError as err:
        raise ConfigError(f"config keys 'mean' and 'std': {err}") from None
    if cfg.scheduler in ("one_cycle", "cyclic") and (cfg.warmup_epochs > 0 or cfg.lr_epoch_stair):
        raise ConfigError(f"scheduler '{cfg.scheduler}' shapes the whole run itself: it takes no warm-up and no "
                          "per-epoch stairs (set warmup_epochs: 0 and lr_epoch_stair: False), as in MindCV")
    if cfg.reduction == "none":
        raise ConfigError("config key 'reduction: none' gives one loss per sample and cannot train; use mean or sum")
    if cfg.opt in TIMM_OPTIMIZERS and importlib.util.find_spec("timm") is None:
        raise ConfigError(f"opt '{cfg.opt}' uses timm's implementation: pip install 'res2net[optim]'")
    check_device(cfg.device)
    if isinstance(cfg.re_value, str) and cfg.re_value != "random":
        raise ConfigError(
            f"config key 're_value' expects a number, 'random' or a list of numbers, got {cfg.re_value!r}")
    return cfg


def _apply_legacy(values: dict[str, Any], old: str, new: str, meaning: dict[bool, str]) -> None:
    """Translate a MindCV < 0.3 boolean key into its 0.3 replacement, refusing contradictions."""
    if values.get(old) is None:
        return
    wanted = meaning[values[old]]
    if new in values and values[new] != wanted:
        raise ConfigError(f"config keys '{old}: {values[old]}' and '{new}: {values[new]}' contradict each other")
    values[new] = wanted


def check_mapping(values: Any, source: str) -> Mapping[str, Any]:
    """Refuse anything but a mapping of known string keys."""
    return check_keys(Config, values, source)
