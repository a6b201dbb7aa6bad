"""Training fidelity with MindCV 0.3.0, component by component, on fixtures MindCV itself produced
(tests/fixtures/make_mindcv_training_fixtures.py, run with MindSpore 2.10 + MindCV 0.3.0).

- the learning rate at every step of all eight recipes and of cases covering every scheduler;
- which parameters get weight decay under each ``weight_decay_filter``;
- the loss (CE / BCE, label smoothing, reduction) on the same logits and labels;
- mixup / cutmix: the parameters built from the recipe, and the same images and targets when
  our mixer is fed the random draws MindCV's made.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from res2net.checkpoint.mindspore_ckpt import parse_mindspore_checkpoint
from res2net.checkpoint.remap import to_our_names
from res2net.checkpoint.sniff import CheckpointFormat
from res2net.config import Config
from res2net.data.mixing import smooth_one_hot
from res2net.models import build_model, register_model
from res2net.train.data_setup import build_mixer
from res2net.train.optim import param_groups
from res2net.train.schedule import LRSchedule
from res2net.train.step import classification_loss

FIXTURES = Path(__file__).parent / "fixtures"
MINDCV = FIXTURES / "mindcv_training"
RECIPES = FIXTURES / "mindcv_configs"
SCHEDULES = json.loads((MINDCV / "schedules.json").read_text())
PARAM_GROUPS = json.loads((MINDCV / "param_groups.json").read_text())
LOSSES = json.loads((MINDCV / "losses.json").read_text())
MIXUP = json.loads((MINDCV / "mixup.json").read_text())
TINY = {"layers": (1, 1, 1, 1), "base_width": 8, "scale": 4}  # MindCV's Res2Net(Bottle2neck, [1, 1, 1, 1], 8)
register_model("fidelity_tiny", "res2net", TINY, "MindCV's one-block-per-stage Res2Net")
register_model("fidelity_tiny_v1b", "res2net", {**TINY, "stem_type": "deep", "shortcut_type": "avgpool"}, "v1b")


def config_of(recipe: str | None, overrides: dict[str, Any]) -> Config:
    values = yaml.safe_load((RECIPES / recipe).read_text()) if recipe else {}
    return Config.from_dict({**values, **overrides})


def test_the_fixtures_cover_every_recipe_and_scheduler() -> None:
    recipes = {case["recipe"] for case in SCHEDULES.values() if case["recipe"]}
    assert recipes == {p.name for p in RECIPES.glob("*.yaml")} and len(recipes) == 8
    schedulers = {config_of(c["recipe"], c["overrides"]).scheduler for c in SCHEDULES.values()}
    assert {"constant", "cosine_decay", "warmup_cosine_decay", "step_decay", "multi_step_decay", "exponential_decay",
            "polynomial_decay", "one_cycle", "cyclic"} <= schedulers
    assert any(c["overrides"].get("lr_epoch_stair") for c in SCHEDULES.values())


@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_learning_rate_at_every_step_equals_mindcvs(case: str) -> None:
    fixture = SCHEDULES[case]
    cfg = config_of(fixture["recipe"], fixture["overrides"])
    schedule = LRSchedule.from_config(cfg, fixture["steps_per_epoch"])
    expected = fixture["lrs"]
    assert len(expected) == fixture["steps_per_epoch"] * cfg.epoch_size
    worst = max(abs(schedule(step) - value) for step, value in enumerate(expected))
    assert worst <= 1e-7, f"{case}: largest difference {worst:.3g}"


def _our_names(version: str) -> dict[str, str]:
    """MindCV's parameter names -> ours, through the translation that loads MindCV's files, applied
    to a genuine MindCV checkpoint of the same network (its tensors have the real shapes)."""
    packed = FIXTURES / "mindcv" / ("res2net_train.ckpt.xz" if version == "res2net" else "res2net_v1b.ckpt.xz")
    state = parse_mindspore_checkpoint(lzma.decompress(packed.read_bytes()), packed)
    model_name = "fidelity_tiny" if version == "res2net" else "fidelity_tiny_v1b"
    translated = to_our_names(state, build_model(model_name, num_classes=10).state_dict(), CheckpointFormat.MINDSPORE)
    by_id = {id(tensor): ours for ours, tensor in translated.items()}
    return {name: by_id[id(tensor)] for name, tensor in state.items() if id(tensor) in by_id}


@pytest.mark.parametrize("decay_filter", ["disable", "auto", "norm_and_bias"])
@pytest.mark.parametrize("version", ["res2net", "res2net_v1b"])
def test_weight_decay_reaches_the_same_parameters_as_in_mindcv(version: str, decay_filter: str) -> None:
    theirs = PARAM_GROUPS[f"{version}/{decay_filter}"]
    model = build_model("fidelity_tiny" if version == "res2net" else "fidelity_tiny_v1b", num_classes=10)
    names = {id(p): n for n, p in model.named_parameters()}
    ours = {names[id(p)]: g["weight_decay"] for g in param_groups(model, 1e-4, decay_filter) for p in g["params"]}
    mapping = _our_names(version)
    assert sorted(mapping[n] for n in theirs) == sorted(ours)
    for name, decay in theirs.items():
        assert ours[mapping[name]] == pytest.approx(decay, rel=1e-6), (name, mapping[name])
    assert any(d == 0 for d in theirs.values()) == (decay_filter != "disable")


@pytest.mark.parametrize("name", ["CE", "BCE"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_equals_mindcvs_for_hard_and_mixed_labels(name: str, smoothing: float, reduction: str) -> None:
    logits, hard = torch.tensor(LOSSES["logits"]), torch.tensor(LOSSES["hard"])
    expected = LOSSES["losses"]
    ours = classification_loss(logits, hard, kind=name, label_smoothing=smoothing, reduction=reduction)
    assert ours.item() == pytest.approx(expected[f"{name}/{smoothing}/{reduction}/hard"], rel=1e-6)
    # Mixed labels: MindCV mixes one-hot labels and smooths in the loss; our mixer smooths before
    # mixing and the loss leaves soft targets alone. Smoothing is linear, so both give this.
    lam, classes = LOSSES["lam"], logits.shape[1]
    ours_soft = lam * smooth_one_hot(hard, classes, smoothing) + (1 - lam) * smooth_one_hot(hard.flip(0), classes,
                                                                                         smoothing)
    mixed = classification_loss(logits, ours_soft, kind=name, label_smoothing=smoothing, reduction=reduction)
    assert mixed.item() == pytest.approx(expected[f"{name}/{smoothing}/{reduction}/soft"], rel=1e-6)


class ReplayedDraws:
    """Stands in for our mixer's generator, returning the values MindCV's np.random calls returned."""

    def __init__(self, draws: list[list[Any]]) -> None:
        self._draws = iter(draws)

    def _next(self, kind: str) -> Any:
        recorded_kind, value = next(self._draws)
        assert recorded_kind == kind, f"our mixer drew {kind} where MindCV drew {recorded_kind}"
        return value

    def random(self) -> float:
        return float(self._next("random"))

    def beta(self, a: float, b: float) -> float:
        return float(self._next("beta"))

    def integers(self, low: int, high: int) -> int:
        return int(self._next("integers"))


@pytest.mark.parametrize("case", sorted(MIXUP["cases"]))
def test_mixup_and_cutmix_mix_as_mindcv_does(case: str) -> None:
    fixture = MIXUP["cases"][case]
    cfg = config_of(fixture["recipe"], {**fixture["overrides"], "label_smoothing": 0.0})
    mixer = build_mixer(cfg, num_classes=4, seed=0)
    assert mixer is not None
    params = fixture["params"]
    assert (mixer.mixup_alpha, mixer.cutmix_alpha, mixer.prob, mixer.switch_prob) == (
        params["mixup_alpha"], params["cutmix_alpha"], params["prob"], params["switch_prob"])
    assert params["mode"] == "batch" and params["correct_lam"] and params["label_smoothing"] == 0.0
    images, labels = torch.tensor(MIXUP["images"]), torch.tensor(MIXUP["labels"])
    for run in fixture["runs"]:
        mixer._rng = ReplayedDraws(run["draws"])  # type: ignore[assignment]
        mixed, targets = mixer(images.clone(), labels)
        torch.testing.assert_close(mixed, torch.tensor(run["images"]), rtol=0, atol=1e-6)
        torch.testing.assert_close(targets, torch.tensor(run["targets"]), rtol=0, atol=1e-6)
        with pytest.raises(StopIteration):
            mixer._rng.random()  # type: ignore[attr-defined]  # every draw MindCV made was used
