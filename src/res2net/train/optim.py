"""Optimizers with MindCV's names, and its weight-decay filter.

``weight_decay_filter: norm_and_bias`` (or ``auto``, or the older
``filter_bias_and_bn: True``) exempts one-dimensional parameters — BatchNorm scales
and shifts, biases — from weight decay, which is the standard recipe for ResNets.
Optimizers run in their foreach (multi-tensor) form: one kernel per step, not one
per parameter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import Config
from ..errors import ConfigError
from .lamb import Lamb


def decay_filter_enabled(cfg: Config) -> bool:
    if cfg.filter_bias_and_bn is not None and "weight_decay_filter" not in cfg.provided:
        return cfg.filter_bias_and_bn
    return cfg.weight_decay_filter in ("auto", "norm_and_bias")


def param_groups(model: nn.Module, weight_decay: float, filter_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Split trainable parameters into decayed and not-decayed groups."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if filter_norm_and_bias and parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The optimizer ``cfg.opt`` over ``model``'s parameters (lr is set per step by the schedule)."""
    groups = param_groups(model, cfg.weight_decay, decay_filter_enabled(cfg))
    name = cfg.opt
    if name in ("sgd", "momentum", "nesterov"):
        nesterov = name == "nesterov" or cfg.use_nesterov
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, foreach=True)
    betas = (cfg.momentum, 0.999)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, foreach=True)
    if name == "nadam":
        return torch.optim.NAdam(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, foreach=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum, eps=cfg.eps, foreach=True)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=cfg.lr, eps=cfg.eps, foreach=True)
    if name == "lamb":
        return Lamb(groups, lr=cfg.lr, betas=betas, eps=cfg.eps)
    raise ConfigError(f"opt '{name}' is not available on PyTorch in this package; "
                      "use one of sgd, momentum, nesterov, adam, adamw, nadam, rmsprop, adagrad, lamb")
