"""Optimizers, weight-decay filtering, learning-rate schedules and the loss, from recipe keys."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from res2net import cli
from res2net.config import key_specs, load_config
from res2net.errors import ConfigError
from res2net.models import build_model
from res2net.train.optim import build_optimizer, param_groups
from res2net.train.schedule import LRSchedule
from res2net.train.step import StepRunner, classification_loss

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def test_weight_decay_filters_follow_mindcv() -> None:
    """norm_and_bias exempts BatchNorm and every bias; auto (MindSpore's own filter) only BatchNorm."""
    model = tiny_net()
    conv, bn, fc = model[0], model[1], model[4]

    def exempt(filter_name: str) -> set[int]:
        return {id(p) for g in param_groups(model, 1e-4, filter_name) if g["weight_decay"] == 0.0 for p in g["params"]}

    assert exempt("norm_and_bias") == {id(conv.bias), id(bn.weight), id(bn.bias), id(fc.bias)}
    assert exempt("auto") == {id(bn.weight), id(bn.bias)}
    assert exempt("disable") == set()
    assert len(param_groups(model, 1e-4, "disable")) == 1
    optimizer = build_optimizer(model, config("--opt", "momentum", "--weight_decay_filter", "norm_and_bias"))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [optimizer.param_groups[0]["weight_decay"], 0.0]
    legacy = build_optimizer(model, config("--opt", "momentum", "--filter_bias_and_bn", "True"))
    assert [len(g["params"]) for g in legacy.param_groups] == [len(g["params"]) for g in optimizer.param_groups]


def test_layer_decay_scales_each_stage_from_the_head_down() -> None:
    """timm/BEiT layer-wise decay: head x1, layer4 x d, layer3 x d^2 ... stem x d^5, filters kept."""
    model = build_model("res2net50", num_classes=10)
    groups = param_groups(model, 0.05, "norm_and_bias", layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    expected = {"conv1": 0.5**5, "bn1": 0.5**5, "layer1": 0.5**4, "layer2": 0.5**3, "layer3": 0.5**2,
                "layer4": 0.5, "fc": 1.0}
    for name, parameter in model.named_parameters():
        assert scale_of[id(parameter)] == pytest.approx(expected[name.split(".")[0]]), name
        assert decay_of[id(parameter)] == (0.0 if parameter.ndim == 1 else 0.05), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))

    optimizer = build_optimizer(model, config("--opt", "sgd", "--layer_decay", "0.5", "--lr", "0.1"))
    LRSchedule.from_config(config("--scheduler", "constant", "--lr", "0.1", "--warmup_epochs", "0"), 10).apply(
        optimizer, 0)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.fc.weight)] == pytest.approx(0.1)
    assert lr_of[id(model.conv1.weight)] == pytest.approx(0.1 * 0.5**5)
    dla = param_groups(build_model("res2net_dla60", num_classes=10), 0.0, "disable", layer_decay=0.9)
    assert sorted({g["lr_scale"] for g in dla}) == pytest.approx(sorted(0.9**k for k in range(6)))


@pytest.mark.parametrize(
    "name", ["sgd", "momentum", "nesterov", "adam", "adamw", "lion", "nadam", "adan", "rmsprop", "adagrad", "lamb"]
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


def test_every_listed_optimizer_is_built() -> None:
    choices = key_specs()["opt"][0].choices
    for name in choices:
        assert isinstance(build_optimizer(tiny_net(), config("--opt", name)), torch.optim.Optimizer), name


def test_timm_optimizers_without_timm_fail_when_the_recipe_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real_find_spec(name, *a)
    )
    for name in ("lion", "adan"):
        with pytest.raises(ConfigError, match=rf"opt '{name}' uses timm's implementation: pip install '.*\[optim\]'"):
            config("--opt", name)
    assert config("--opt", "adamw").opt == "adamw"


@pytest.mark.parametrize("kind", ["CE", "BCE"])
def test_reduction_sum_is_mean_times_the_element_count(kind: str) -> None:
    logits, targets = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    mean = classification_loss(logits, targets, kind=kind, label_smoothing=0.1, reduction="mean")
    total = classification_loss(logits, targets, kind=kind, label_smoothing=0.1, reduction="sum")
    elements = 6 if kind == "CE" else 6 * 5
    assert total.item() == pytest.approx(mean.item() * elements, rel=1e-6)


def test_reduction_reaches_the_step() -> None:
    runner_args = {"device": torch.device("cpu"), "amp_dtype": None, "loss_kind": "CE", "label_smoothing": 0.0,
                   "accumulation_steps": 1, "clip_norm": None}
    images, targets = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    losses = {}
    for reduction in ("mean", "sum"):
        model = tiny_net()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        runner = StepRunner(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), reduction=reduction,
                            **runner_args)
        losses[reduction] = runner.forward_backward(images, targets).item()
    assert losses["sum"] == pytest.approx(8 * losses["mean"], rel=1e-5)


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


def test_schedule_command_prints_every_step_as_hand_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 warm-up epochs (0 -> 0.4 linearly), then cosine from 0.4 to 0 over 4 epochs; 2 steps per epoch."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("scheduler: cosine_decay\nlr: 0.4\nmin_lr: 0.0\nwarmup_epochs: 2\nwarmup_factor: 0.0\n"
                      "decay_epochs: 4\nepoch_size: 6\n")
    assert cli.main(["schedule", "-c", str(recipe), "--steps_per_epoch", "2", "--json"]) == 0
    cosine = [0.2 * (1 + math.cos(math.pi * e / 4)) for e in (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5)]
    expected = [0.0, 0.1, 0.2, 0.3, *cosine]
    assert json.loads(capsys.readouterr().out) == pytest.approx(expected, abs=1e-12)
    assert cosine[1] == pytest.approx(0.3847759, abs=1e-7)  # 0.2 * (1 + cos(pi / 8)), by hand

    # Recipe flags override the file; the text form names the phases.
    assert cli.main(["schedule", "-c", str(recipe), "--steps_per_epoch", "2", "--lr", "0.8"]) == 0
    text = capsys.readouterr().out
    assert "6 epochs x 2 steps = 12 steps" in text and "0.8 after the warm-up (step 4)" in text
    assert text.count("\nepoch ") == 6


def test_schedule_command_counts_steps_from_the_data_and_plots(
    tiny_digits_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = REPO_ROOT / "configs/demo/res2net50_digits.yaml"
    png = tmp_path / "lr.png"
    argv = ["schedule", "-c", str(recipe), "--data_dir", str(tiny_digits_dir), "--batch_size", "16", "--json",
            "--plot", str(png)]
    assert cli.main(argv) == 0
    values = json.loads(capsys.readouterr().out)
    assert len(values) == 6 * (40 // 16)  # 40 training images, batch 16, remainder dropped
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main([*argv[:-2], "--world_size", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6 * (40 // 32)
    assert cli.main(["schedule", "-c", str(recipe), "--data_dir", str(tmp_path / "none")]) == 1
    assert "pass --steps_per_epoch N" in capsys.readouterr().err


def test_optimizer_constants_are_mindspores_unless_the_recipe_sets_them() -> None:
    """MindCV passes eps to RMSProp only; Adam-family optimizers keep MindSpore's 1e-8."""
    assert build_optimizer(tiny_net(), config("--opt", "adamw")).defaults["eps"] == 1e-8
    assert build_optimizer(tiny_net(), config("--opt", "lamb")).defaults["eps"] == 1e-6
    assert build_optimizer(tiny_net(), config("--opt", "adamw", "--eps", "1e-6")).defaults["eps"] == 1e-6
    rmsprop = build_optimizer(tiny_net(), config("--opt", "rmsprop")).defaults
    assert (rmsprop["eps"], rmsprop["alpha"]) == (1e-10, 0.9)
    assert build_optimizer(tiny_net(), config("--opt", "adagrad")).defaults["initial_accumulator_value"] == 0.1


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "adagrad"])
def test_optimizers_with_fused_kernels_use_them(name: str) -> None:
    optimizer = build_optimizer(tiny_net(), config("--opt", name))
    assert optimizer.defaults["fused"] is True and not optimizer.defaults.get("foreach")
