"""Optimizers, weight-decay filtering, learning-rate schedules and the loss, from recipe keys."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from res2net.config import load_config
from res2net.errors import ConfigError
from res2net.train.optim import build_optimizer, param_groups
from res2net.train.schedule import LRSchedule
from res2net.train.step import classification_loss


def config(*flags: str):  # noqa: ANN201 - a Config
    return load_config(list(flags), purpose="train")


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_cosine_with_warmup_follows_mindcv() -> None:
    schedule = LRSchedule.from_config(
        config("--scheduler", "cosine_decay", "--lr", "0.1", "--min_lr", "0.0", "--warmup_epochs", "4",
               "--decay_epochs", "196", "--epoch_size", "200", "--warmup_factor", "0.0"),
        steps_per_epoch=10,
    )
    assert schedule(0) == 0.0
    assert schedule(20) == pytest.approx(0.05)  # half-way through warm-up
    assert schedule(40) == pytest.approx(0.1)  # peak at the end of warm-up
    assert schedule(40 + 980) == pytest.approx(0.05)  # half-way through the cosine
    assert schedule(2000) == pytest.approx(0.0, abs=1e-12)
    values = [schedule(step) for step in range(40, 2000, 7)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_step_decay_is_mindcv_res2net101_ascend() -> None:
    schedule = LRSchedule.from_config(
        config("--scheduler", "step_decay", "--lr", "0.1", "--decay_rate", "0.1", "--decay_epochs", "30",
               "--warmup_epochs", "0", "--epoch_size", "140"),
        steps_per_epoch=5,
    )
    assert schedule(29 * 5) == pytest.approx(0.1)
    assert schedule(30 * 5) == pytest.approx(0.01)
    assert schedule(61 * 5) == pytest.approx(0.001)


def test_multi_step_and_epoch_stair() -> None:
    schedule = LRSchedule.from_config(
        config("--scheduler", "multi_step_decay", "--lr", "1.0", "--decay_rate", "0.5",
               "--multi_step_decay_milestones", "2", "5", "--warmup_epochs", "1", "--lr_epoch_stair", "True"),
        steps_per_epoch=4,
    )
    assert [schedule(s) for s in range(4)] == [0.0] * 4  # stair: warm-up value held for the epoch
    assert schedule(4) == 1.0
    assert schedule(4 * 3) == 0.5  # epoch 2 of the main schedule
    assert schedule(4 * 6) == 0.25


@pytest.mark.parametrize("name", ["polynomial_decay", "one_cycle", "exponential_decay", "constant", "cyclic"])
def test_other_schedules_stay_within_bounds(name: str) -> None:
    schedule = LRSchedule.from_config(
        config("--scheduler", name, "--lr", "0.2", "--min_lr", "0.001", "--warmup_epochs", "0", "--epoch_size", "10",
               "--decay_epochs", "10", "--decay_rate", "0.9"),
        steps_per_epoch=3,
    )
    values = [schedule(step) for step in range(30)]
    assert all(0.0 <= v <= 0.2 + 1e-12 for v in values)
    assert not math.isclose(min(values), max(values)) or name == "constant"


def test_weight_decay_filter_exempts_norm_and_bias() -> None:
    model = tiny_net()
    groups = param_groups(model, 1e-4, filter_norm_and_bias=True)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight), id(model[4].weight)}
    assert len(param_groups(model, 1e-4, filter_norm_and_bias=False)) == 1
    optimizer = build_optimizer(model, config("--opt", "momentum", "--weight_decay_filter", "norm_and_bias"))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [optimizer.param_groups[0]["weight_decay"], 0.0]


@pytest.mark.parametrize(
    "name", ["sgd", "momentum", "nesterov", "adam", "adamw", "nadam", "rmsprop", "adagrad", "lamb"]
)
def test_every_optimizer_learns(name: str) -> None:
    model = tiny_net()
    optimizer = build_optimizer(model, config("--opt", name, "--lr", "0.01", "--weight_decay", "1e-4"))
    images, targets = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(images), targets)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0]


def test_unavailable_optimizer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="adan"):
        build_optimizer(tiny_net(), config("--opt", "adan"))


def test_soft_targets_are_not_smoothed_twice() -> None:
    logits = torch.randn(4, 5)
    targets = torch.tensor([0, 1, 2, 3])
    soft = nn.functional.one_hot(targets, 5).float() * 0.9 + 0.02
    assert classification_loss(logits, soft, kind="CE", label_smoothing=0.1) == pytest.approx(
        nn.functional.cross_entropy(logits, soft).item()
    )
    assert classification_loss(logits, targets, kind="CE", label_smoothing=0.1) == pytest.approx(
        nn.functional.cross_entropy(logits, targets, label_smoothing=0.1).item()
    )
    bce = classification_loss(logits, targets, kind="BCE", label_smoothing=0.1)
    expected = nn.functional.binary_cross_entropy_with_logits(logits, nn.functional.one_hot(targets, 5) * 0.9 + 0.02)
    assert bce.item() == pytest.approx(expected.item())
