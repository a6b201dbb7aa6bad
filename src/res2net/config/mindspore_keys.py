"""What MindSpore-only keys mean on PyTorch: mixed precision, loss scaling, and the ignored ones.

MindCV recipes carry ``amp_level: O2`` and ``loss_scale: 1024``; silently dropping them
would change what a recipe does, so they are translated here into one decision the
training and validation code can apply (:func:`amp_plan`). Keys with no PyTorch meaning
(``mode``, ``dataset_sink_mode``, ``device_target``...) are accepted and reported by
:func:`ignored_key_notes`, one line each, so a user knows they had no effect.

This module stays free of torch so that parsing a recipe stays fast; dtypes are names
(``getattr(torch, plan.dtype)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schema import Config, key_specs

# GradScaler refuses growth_factor <= 1, so "never grow" is an interval no run reaches.
_NEVER = 2**31 - 1
# MindCV's DynamicLossScaleManager: scale_factor=2, scale_window=2000 (as GradScaler's defaults).
_DYNAMIC_WINDOW = 2000
# MindSpore picks the scale itself for loss_scale_type auto; GradScaler's default start is the closest.
_AUTO_INIT_SCALE = 2.0**16


@dataclass(frozen=True)
class AmpPlan:
    """How to run one phase (training or validation) numerically.

    ``dtype`` is None for fp32, else "bfloat16" or "float16" for ``torch.autocast``.
    ``use_scaler`` is True only for float16 training; :meth:`scaler_kwargs` then gives
    ``torch.amp.GradScaler``'s arguments.
    """

    dtype: str | None
    use_scaler: bool
    init_scale: float = 1.0
    growth_interval: int = _DYNAMIC_WINDOW

    @property
    def enabled(self) -> bool:
        """Whether to run under ``torch.autocast``."""
        return self.dtype is not None

    def scaler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``torch.amp.GradScaler(device_type, **kwargs)``."""
        return {
            "init_scale": self.init_scale,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": self.growth_interval,
            "enabled": self.use_scaler,
        }

    def describe(self) -> str:
        """One phrase for the run summary, e.g. "float16 autocast, loss scale 1024 (fixed)"."""
        if self.dtype is None:
            return "fp32"
        if not self.use_scaler:
            return f"{self.dtype} autocast"
        kind = "fixed" if self.growth_interval == _NEVER else "dynamic"
        return f"{self.dtype} autocast, loss scale {self.init_scale:g} ({kind})"


def amp_plan(cfg: Config, device_type: str, *, validation: bool = False) -> AmpPlan:
    """Translate ``amp_level`` (or ``val_amp_level``), ``amp_dtype`` and ``loss_scale*`` for a device.

    - O0: fp32. O1, O2, O3 and auto: ``torch.autocast`` (autocast picks per operator, so
      MindSpore's white/black-list distinctions between the levels collapse into one).
    - dtype: ``amp_dtype``, where auto = bfloat16 on CPU (no fp16 speed-up there) and
      float16 elsewhere (what MindSpore's levels use, and what loss_scale is for).
    - float16 training gets a GradScaler: ``loss_scale_type`` fixed starts at
      ``loss_scale`` and never grows (an overflow still skips the step and halves the
      scale: GradScaler cannot keep it constant through an overflow); dynamic starts at
      ``loss_scale`` and doubles after 2000 clean steps, as MindCV's dynamic manager;
      auto uses GradScaler's own start (2**16). Validation needs no scaler.
    """
    level = cfg.val_amp_level if validation else cfg.amp_level
    if level == "O0":
        return AmpPlan(dtype=None, use_scaler=False)
    dtype = cfg.amp_dtype if cfg.amp_dtype != "auto" else ("bfloat16" if device_type == "cpu" else "float16")
    if dtype != "float16" or validation:
        return AmpPlan(dtype=dtype, use_scaler=False)
    if cfg.loss_scale_type == "fixed":
        return AmpPlan(dtype=dtype, use_scaler=True, init_scale=cfg.loss_scale, growth_interval=_NEVER)
    if cfg.loss_scale_type == "dynamic":
        return AmpPlan(dtype=dtype, use_scaler=True, init_scale=cfg.loss_scale)
    return AmpPlan(dtype=dtype, use_scaler=True, init_scale=_AUTO_INIT_SCALE)


def ignored_key_notes(cfg: Config) -> list[str]:
    """One note per MindSpore-only key the user set that has no effect on PyTorch, in schema order."""
    return [f"note: '{name}: {getattr(cfg, name)}' is ignored on PyTorch ({spec.ignored})"
            for name, (spec, _) in key_specs().items() if spec.ignored and name in cfg.provided]


def amp_level_note(cfg: Config, device_type: str, *, validation: bool = False) -> str | None:
    """The one-line note a run prints when its level means less here than on MindSpore.

    MindSpore's O3 casts the whole network, BatchNorm included, to float16. Here every level
    above O0 is ``torch.autocast``: convolutions and matrix products run in the half type,
    activations flow through BatchNorm, ReLU and the residual adds in it (with float32 running
    statistics and weights), while softmax, the loss and other reductions stay in float32, and
    the optimizer updates float32 weights. That is the precision MindSpore's O2 and O3 both aim
    at, without O3's float16 BatchNorm statistics, which are the part that loses accuracy.
    """
    level = cfg.val_amp_level if validation else cfg.amp_level
    if level != "O3":
        return None
    dtype = amp_plan(cfg, device_type, validation=validation).dtype
    key = "val_amp_level" if validation else "amp_level"
    return (f"note: '{key}: O3' (MindSpore: the whole network, BatchNorm included, in float16) runs as "
            f"torch.autocast in {dtype}: convolutions and matrix products in {dtype}, BatchNorm statistics, "
            "softmax and the loss in float32, float32 weights")
