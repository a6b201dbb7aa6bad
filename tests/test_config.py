"""Recipe schema and parser: MindCV compatibility, overrides, and one-line errors for every mistake."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from res2net import cli
from res2net.config import (
    Config,
    amp_level_note,
    amp_plan,
    build_parser,
    ignored_key_notes,
    key_specs,
    load_config,
    schema_keys,
)
from res2net.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
MINDCV_DIR = Path(__file__).resolve().parent / "fixtures/mindcv_configs"
MINDCV_FILES = [
    f"res2net_{depth}{v1b}_{device}.yaml"
    for depth in ("50", "101")
    for v1b in ("", "_v1b")
    for device in ("ascend", "gpu")
]
# Our device-neutral recipe -> the MindCV file behind its published number (152: MindCV has none,
# the 101 values at 152 layers).
OUR_RECIPES = {
    "res2net_50": "res2net_50_ascend.yaml",
    "res2net_101": "res2net_101_ascend.yaml",
    "res2net_152": "res2net_101_ascend.yaml",
    "res2net_50_v1b": "res2net_50_v1b_ascend.yaml",
    "res2net_101_v1b": "res2net_101_v1b_ascend.yaml",
    "res2net_152_v1b": "res2net_101_v1b_ascend.yaml",
}
# Not hyper-parameters: where checkpoints go (ours: one folder per recipe), the model (which differs
# for the 152 recipes by design), the fp16 loss-scale policy (ours grows back after an overflow) and
# torch.compile (ours: on, for runs of hours).
NOT_COMPARED = {"config", "ckpt_save_dir", "model", "loss_scale_type", "compile"}

# MindCV 0.3.0 config.py: every key with its default (model excepted: ours defaults to res2net50).
MINDCV_DEFAULTS: dict[str, Any] = {
    "mode": 0, "distribute": False, "val_while_train": False, "val_interval": 1, "log_interval": 100,
    "seed": 42, "device_target": "Ascend",
    "dataset": "imagenet", "data_dir": "./", "train_split": "train", "val_split": "val",
    "dataset_download": False, "num_parallel_workers": 8, "shuffle": True, "num_samples": None,
    "batch_size": 128, "drop_remainder": True,
    "image_resize": 224, "scale": [0.08, 1.0], "ratio": [0.75, 1.333], "hflip": 0.5, "vflip": 0.0,
    "color_jitter": 0.4, "interpolation": "bilinear", "auto_augment": None, "aug_splits": 0, "re_prob": 0.0,
    "re_scale": [0.02, 0.33], "re_ratio": [0.3, 3.3], "re_value": 0, "re_max_attempts": 10,
    "mean": [0.485 * 255, 0.456 * 255, 0.406 * 255], "std": [0.229 * 255, 0.224 * 255, 0.225 * 255],
    "crop_pct": 0.875, "mixup": 0.0, "cutmix": 0.0, "cutmix_prob": 1.0, "aug_repeats": 0,
    "num_classes": None, "in_channels": 3, "drop_rate": None, "drop_path_rate": None, "pretrained": False,
    "ckpt_path": "", "resume_opt": False, "keep_checkpoint_max": 10, "ckpt_save_dir": "./ckpt",
    "ckpt_save_interval": 1, "ckpt_save_policy": "latest_k", "epoch_size": 90, "dataset_sink_mode": True,
    "ema": False, "ema_decay": 0.9999, "clip_grad": False, "clip_value": 15.0, "layer_decay": None,
    "gradient_accumulation_steps": 1,
    "opt": "adam", "momentum": 0.9, "weight_decay": 1e-6, "use_nesterov": False, "weight_decay_filter": "disable",
    "eps": 1e-10,
    "scheduler": "cosine_decay", "lr": 0.001, "min_lr": 1e-6, "warmup_epochs": 3, "warmup_factor": 0.0,
    "decay_epochs": 100, "decay_rate": 0.9, "multi_step_decay_milestones": [30, 60, 90], "lr_epoch_stair": False,
    "num_cycles": 1, "cycle_decay": 1.0,
    "loss": "CE", "label_smoothing": 0.0, "aux_factor": 0.0, "reduction": "mean",
    "amp_level": "O0", "val_amp_level": "O0", "amp_cast_list": None, "loss_scale_type": "fixed", "loss_scale": 1.0,
    "drop_overflow_update": False, "eval_shuffle": False,
}


def mindcv(name: str) -> Path:
    return MINDCV_DIR / name


def write(tmp_path: Path, text: str, name: str = "res2net_50.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_of(argv: list[str], purpose: str = "train") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(argv, purpose=purpose)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
    return info.value


# --- MindCV compatibility ---------------------------------------------------------------


def test_mindcv_reference_folder_holds_the_eight_recipes() -> None:
    assert MINDCV_DIR.is_dir(), f"missing {MINDCV_DIR}"
    assert sorted(p.name for p in MINDCV_DIR.glob("*.yaml")) == sorted(MINDCV_FILES)


def test_every_mindcv_0_3_key_is_in_the_schema_with_mindcv_default() -> None:
    defaults = Config().to_dict()
    for name, value in MINDCV_DEFAULTS.items():
        assert name in defaults, name
        assert defaults[name] == pytest.approx(value), name
    assert Config().model == "res2net50"
    mindcv_side = {name for name, (spec, _) in key_specs().items() if not spec.ours}
    legacy = {"filter_bias_and_bn", "dynamic_loss_scale"}  # MindCV < 0.3 spellings
    assert mindcv_side == set(MINDCV_DEFAULTS) | {"config", "model"} | legacy


@pytest.mark.parametrize("name", MINDCV_FILES)
@pytest.mark.parametrize("purpose", ["train", "validate"])
def test_mindcv_recipe_every_key_lands_in_config(name: str, purpose: str) -> None:
    raw = yaml.safe_load(mindcv(name).read_text())
    cfg = load_config(["-c", str(mindcv(name))], purpose=purpose)  # type: ignore[arg-type]
    resolved = cfg.to_dict()
    for key, value in raw.items():
        assert resolved[key] == value, key
    assert cfg.provided == set(raw) | {"config"}
    assert cfg.config == str(mindcv(name))


def test_mindcv_seed_command_line_works() -> None:
    """The seed's standalone and validation commands, flag for flag."""
    path = str(mindcv("res2net_50_ascend.yaml"))
    train = load_config(["--config", path, "--data_dir", "/data/imagenet", "--distribute", "False"], purpose="train")
    assert (train.distribute, train.data_dir, train.epoch_size, train.amp_level) == (False, "/data/imagenet", 200, "O3")
    val = load_config(["-c", path, "--data_dir", "/d", "--ckpt_path", "/ck/res2net50.ckpt"], purpose="validate")
    assert val.ckpt_path == "/ck/res2net50.ckpt"
    assert val.distribute is True


# --- our recipes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MINDCV_FILES)
def test_mindcv_file_names_in_configs_carry_mindcvs_values_key_by_key(name: str) -> None:
    """configs/res2net/<MindCV's file name> resolves to exactly what MindCV's own file does."""
    ours = load_config(["-c", str(REPO / "configs/res2net" / name)], purpose="train").to_dict()
    theirs = load_config(["-c", str(mindcv(name))], purpose="train").to_dict()
    assert sorted(ours) == sorted(theirs)
    for key in sorted(ours.keys() - {"config"}):
        assert ours[key] == theirs[key], key
    raw = yaml.safe_load((REPO / "configs/res2net" / name).read_text())
    assert set(raw) == set(yaml.safe_load(mindcv(name).read_text()))  # the same keys are written out


@pytest.mark.parametrize("recipe", sorted(OUR_RECIPES))
def test_our_recipe_has_the_values_behind_the_published_number(recipe: str) -> None:
    ours = load_config(["-c", str(REPO / "configs/res2net" / f"{recipe}.yaml")], purpose="train").to_dict()
    theirs = load_config(["-c", str(mindcv(OUR_RECIPES[recipe]))], purpose="train").to_dict()
    for key in sorted(ours.keys() - NOT_COMPARED):
        assert ours[key] == theirs[key], key
    assert ours["model"] == recipe.replace("res2net_", "res2net")
    assert ours["ckpt_save_dir"] == f"./runs/{recipe}"
    assert ours["loss_scale_type"] == "dynamic" and ours["compile"] is True


@pytest.mark.parametrize("recipe", sorted(OUR_RECIPES))
def test_our_recipes_name_registered_models_and_readme_covers_them(recipe: str) -> None:
    from res2net.models.registry import list_models

    cfg = load_config(["-c", str(REPO / "configs/res2net" / f"{recipe}.yaml")], purpose="train")
    assert cfg.model in list_models()
    assert ignored_key_notes(cfg) == []
    assert f"`{recipe}.yaml`" in (REPO / "configs/res2net/README.md").read_text()


def test_demo_recipe_is_small_single_process_fp32() -> None:
    cfg = load_config(["-c", str(REPO / "configs/demo/res2net50_digits.yaml")], purpose="train")
    assert (cfg.model, cfg.num_classes, cfg.distribute, cfg.amp_level) == ("res2net50", 10, False, "O0")
    assert cfg.image_resize <= 64 and cfg.epoch_size <= 20 and not cfg.pretrained
    assert cfg.hflip == 0.0  # digits are not mirror-symmetric


# --- command-line overrides -------------------------------------------------------------


def test_flags_override_file_values() -> None:
    path = str(mindcv("res2net_50_gpu.yaml"))
    cfg = load_config(["-c", path, "--lr", "0.2", "--batch_size", "64", "--model", "res2net101"], purpose="train")
    assert (cfg.lr, cfg.batch_size, cfg.model) == (0.2, 64, "res2net101")
    assert cfg.epoch_size == 300  # untouched file value
    assert cfg.weight_decay_filter == "disable"  # untouched default


def test_flags_without_file_override_defaults() -> None:
    cfg = load_config(["--lr=0.5", "--epoch_size", "3"], purpose="train")
    assert (cfg.lr, cfg.epoch_size, cfg.config) == (0.5, 3, "")
    assert cfg.provided == {"lr", "epoch_size"}


@pytest.mark.parametrize(
    ("argv", "key", "expected"),
    [
        (["--scale", "0.35", "1.0"], "scale", (0.35, 1.0)),
        (["--scale", "0.35,1.0"], "scale", (0.35, 1.0)),
        (["--scale", "[0.35, 1.0]"], "scale", (0.35, 1.0)),
        (["--multi_step_decay_milestones", "10", "20", "25"], "multi_step_decay_milestones", (10, 20, 25)),
        (["--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0.2", "0.2"], "mean", (0.5, 0.5, 0.5)),
        (["--re_value", "random"], "re_value", "random"),
        (["--re_value", "3"], "re_value", 3.0),
        (["--re_value", "1", "2", "3"], "re_value", (1.0, 2.0, 3.0)),
    ],
)
def test_list_flags(argv: list[str], key: str, expected: Any) -> None:
    assert getattr(load_config(argv, purpose="train"), key) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("True", True), ("False", False), ("true", True), ("false", False), ("1", True), ("0", False)],
)
def test_bool_flags(word: str, expected: bool) -> None:
    cfg = load_config(["--distribute", word, "--ema", word], purpose="train")
    assert cfg.distribute is expected and cfg.ema is expected


def test_bare_bool_flag_means_true_as_in_mindcv() -> None:
    assert load_config(["--distribute", "--lr", "0.1"], purpose="train").distribute is True


@pytest.mark.parametrize("word", ["None", "none", "null"])
def test_none_for_optional_keys(word: str) -> None:
    cfg = load_config(["--num_classes", "7", "--num_classes", word, "--drop_rate", word, "--auto_augment", word],
                      purpose="train")
    assert (cfg.num_classes, cfg.drop_rate, cfg.auto_augment) == (None, None, None)


def test_none_refused_for_non_optional_key() -> None:
    message = str(error_of(["--lr", "None"]))
    assert "'lr'" in message and "a number" in message and "None" in message


@pytest.mark.parametrize("scheduler", ["one_cycle", "cyclic"])
@pytest.mark.parametrize("extra", [[], ["--lr_epoch_stair", "True", "--warmup_epochs", "0"]])
def test_whole_run_schedulers_refuse_warmup_and_stairs(scheduler: str, extra: list[str]) -> None:
    message = str(error_of(["--scheduler", scheduler, *extra]))  # the default warmup_epochs is 3
    assert f"'{scheduler}'" in message and "warmup_epochs: 0" in message
    cfg = load_config(["--scheduler", scheduler, "--warmup_epochs", "0"], purpose="train")
    assert (cfg.scheduler, cfg.warmup_epochs, cfg.lr_epoch_stair) == (scheduler, 0, False)


def test_yaml_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-4 as a string; recipes write it that way all the time.
    cfg = load_config(["-c", write(tmp_path, "lr: 1e-4\nweight_decay: 5e-5\n")], purpose="train")
    assert (cfg.lr, cfg.weight_decay) == (1e-4, 5e-5)


def test_enum_values_are_case_insensitive_and_stored_canonically(tmp_path: Path) -> None:
    cfg = load_config(["-c", write(tmp_path, "loss: ce\nopt: Momentum\n"), "--amp_level", "o2",
                       "--interpolation", "area"], purpose="train")
    assert (cfg.loss, cfg.opt, cfg.amp_level, cfg.interpolation) == ("CE", "momentum", "O2", "box")
    assert load_config(["--amp_dtype", "bf16"], purpose="train").amp_dtype == "bfloat16"


# --- errors -----------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "lr: 0.1\nlr_shceduler: cosine_decay\n")
    message = str(error_of(["-c", path]))
    assert message == f"unknown config key 'lr_shceduler' in {path} (did you mean 'scheduler'?)"


def test_unknown_key_on_command_line(tmp_path: Path) -> None:
    message = str(error_of(["-c", str(mindcv("res2net_50_gpu.yaml")), "--batchsize", "64"]))
    assert message == "unknown config key 'batchsize' on the command line (did you mean 'batch_size'?)"
    assert "'warmup_epochs'" in str(error_of(["--warmup_epoch=3"]))


def test_argparse_errors_become_one_line_config_errors() -> None:
    assert "expected one argument" in str(error_of(["--lr"]))
    assert "unexpected argument 'extra'" in str(error_of(["--lr", "0.1", "extra"]))
    assert "expected at least one argument" in str(error_of(["--scale"], purpose="validate"))


@pytest.mark.parametrize(
    ("yaml_text", "key", "expected"),
    [
        ("lr: abc\n", "lr", "a number"),
        ("batch_size: 3.5\n", "batch_size", "an integer"),
        ("batch_size: true\n", "batch_size", "an integer"),
        ("distribute: maybe\n", "distribute", "a boolean (True/False)"),
        ("scale: [0.5]\n", "scale", "a list of 2 numbers"),
        ("scale: 0.5\n", "scale", "a list of 2 numbers"),
        ("data_dir: 12\n", "data_dir", "a string"),
        ("num_classes: ten\n", "num_classes", "an integer or None"),
        ("mean: {a: 1}\n", "mean", "a list of numbers"),
        ("lr: .nan\n", "lr", "a number"),
    ],
)
def test_wrong_type_in_file_names_key_type_and_value(tmp_path: Path, yaml_text: str, key: str, expected: str) -> None:
    path = write(tmp_path, yaml_text)
    message = str(error_of(["-c", path]))
    assert message.startswith(f"config key '{key}' in {path} expects {expected}, got ")


def test_wrong_type_on_command_line() -> None:
    assert str(error_of(["--epoch_size", "ten"])) == (
        "config key 'epoch_size' on the command line (--epoch_size) expects an integer, got 'ten'"
    )


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["--opt", "momentun"], "momentum"),
        (["--scheduler", "cosine"], "cosine_decay"),
        (["--loss", "CEE"], "CE"),
        (["--interpolation", "bilinar"], "bilinear"),
        (["--ckpt_save_policy", "topk"], "top_k"),
        (["--loss_scale_type", "dinamic"], "dynamic"),
        (["--weight_decay_filter", "norm_bias"], "norm_and_bias"),
        (["--auto_augment", "randaugment-m9-mstd0.5"], "randaug"),
        (["--amp_dtype", "bfloat"], "bfloat16"),
    ],
)
def test_enumerated_keys_suggest_the_closest_value(argv: list[str], suggestion: str) -> None:
    message = str(error_of(argv))
    assert f"'{argv[0][2:]}'" in message and f"(did you mean '{suggestion}'?)" in message


@pytest.mark.parametrize(
    "argv",
    [["--hflip", "1.5"], ["--batch_size", "0"], ["--lr", "-0.1"], ["--crop_pct", "0"], ["--loss_scale", "0.5"],
     ["--scale", "0.9", "0.1"], ["--mean", "1", "2"], ["--re_value", "rand"], ["--device", "gpu"]],
)
def test_out_of_range_and_inconsistent_values(argv: list[str]) -> None:
    assert f"'{argv[0][2:]}'" in str(error_of(argv))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("a: [\n", "not valid YAML (line 2)"), ("- lr\n- 0.1\n", "must be a mapping"), ("1: 2\n", "must be strings"),
     ("lr: 2001-02-30\n", "YAML cannot read")],
)
def test_malformed_files(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in str(error_of(["-c", write(tmp_path, text)]))


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    assert "config file not found" in str(error_of(["-c", str(tmp_path / "nope.yaml")]))
    assert "cannot read config file" in str(error_of(["-c", str(tmp_path)]))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert load_config(["-c", path], purpose="train") == dataclasses.replace(Config(), config=path)


def test_legacy_mindcv_keys_translate_and_contradictions_are_refused() -> None:
    cfg = load_config(["--filter_bias_and_bn", "True", "--dynamic_loss_scale", "True"], purpose="train")
    assert (cfg.weight_decay_filter, cfg.loss_scale_type) == ("norm_and_bias", "dynamic")
    message = str(error_of(["--filter_bias_and_bn", "False", "--weight_decay_filter", "norm_and_bias"]))
    assert "contradict" in message


def test_purpose_must_be_train_or_validate() -> None:
    with pytest.raises(ValueError):
        load_config([], purpose="serve")  # type: ignore[arg-type]


def test_help_lists_every_key() -> None:
    text = build_parser("validate").format_help()
    assert text.startswith("usage: validate.py")
    for name in schema_keys():
        assert f"--{name} " in text


# --- saving and MindSpore-only keys -----------------------------------------------------


def test_to_yaml_round_trips_and_to_dict_is_plain(tmp_path: Path) -> None:
    cfg = load_config(["-c", str(mindcv("res2net_101_ascend.yaml")), "--re_value", "1", "2", "3"], purpose="train")
    data = cfg.to_dict()
    assert list(data) == list(schema_keys())
    assert all(not isinstance(v, tuple) for v in data.values())
    assert Config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    path = write(tmp_path, cfg.to_yaml(), "saved.yaml")
    assert load_config(["-c", path], purpose="validate") == dataclasses.replace(cfg, config=path)


def test_from_dict_validates_like_the_parser() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'lrr' in checkpoint.pt \(did you mean 'lr'\?\)"):
        Config.from_dict({"lrr": 0.1}, source="checkpoint.pt")
    with pytest.raises(ConfigError, match="must be a mapping"):
        Config.from_dict([("lr", 0.1)])  # type: ignore[arg-type]


def test_mean_and_std_are_accepted_on_either_scale_when_both_agree() -> None:
    assert Config().mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    cfg = load_config(["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"], purpose="train")
    assert (cfg.mean, cfg.std) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    zero_mean = load_config(["--mean", "0", "0", "0", "--std", "255", "255", "255"], purpose="train")
    assert zero_mean.std == (255.0, 255.0, 255.0)  # a zero mean fits either scale


def test_ignored_key_notes_one_line_per_mindspore_key_set() -> None:
    cfg = load_config(["-c", str(mindcv("res2net_50_gpu.yaml")), "--device_target", "GPU"], purpose="train")
    notes = ignored_key_notes(cfg)
    named = [re.match(r"note: '(\w+): ", n).group(1) for n in notes]  # type: ignore[union-attr]
    assert named == ["mode", "device_target", "dataset_download", "dataset_sink_mode"]
    assert all("ignored on PyTorch" in n and "\n" not in n for n in notes)
    assert ignored_key_notes(load_config(["--lr", "0.1"], purpose="train")) == []


def test_amp_plan_maps_amp_level_and_loss_scale() -> None:
    gpu = load_config(["-c", str(mindcv("res2net_50_gpu.yaml"))], purpose="train")  # O2, loss_scale 1024 fixed
    fixed = amp_plan(gpu, "cuda")
    assert (fixed.dtype, fixed.use_scaler, fixed.init_scale) == ("float16", True, 1024.0)
    assert fixed.growth_interval > 10**9 and "fixed" in fixed.describe()
    dynamic = amp_plan(dataclasses.replace(gpu, loss_scale_type="dynamic"), "cuda")
    assert (dynamic.init_scale, dynamic.growth_interval) == (1024.0, 2000)
    assert amp_plan(dataclasses.replace(gpu, loss_scale_type="auto"), "cuda").init_scale == 2.0**16
    cpu = amp_plan(gpu, "cpu")
    assert (cpu.dtype, cpu.use_scaler, cpu.describe()) == ("bfloat16", False, "bfloat16 autocast")
    assert amp_plan(dataclasses.replace(gpu, amp_dtype="bfloat16"), "cuda").use_scaler is False
    assert amp_plan(gpu, "cuda", validation=True).enabled is False  # val_amp_level O0
    assert amp_plan(dataclasses.replace(gpu, val_amp_level="O3"), "cuda", validation=True).use_scaler is False
    assert amp_plan(Config(), "cuda").describe() == "fp32"


def test_amp_plan_scaler_kwargs_fit_torch_grad_scaler() -> None:
    import torch

    gpu = load_config(["-c", str(mindcv("res2net_50_gpu.yaml")), "--amp_dtype", "float16"], purpose="train")
    plan = amp_plan(gpu, "cpu")
    scaler = torch.amp.GradScaler("cpu", **plan.scaler_kwargs())
    assert scaler.is_enabled() and scaler.get_scale() == 1024.0
    assert getattr(torch, plan.dtype) is torch.float16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--auto_augment", "3a-m9"], "unknown option 'm9' for 3a"),
        (["--auto_augment", "randaug-m11"], "magnitude m must be in 0..10"),
        (["--auto_augment", "randaugment-m9"], "did you mean 'randaug'?"),
        (["--mean", "0.485", "0.456", "0.406", "--std", "58.4", "57.1", "57.4"], "looks 0-1 scaled but std"),
        (["--mean", "123.7", "116.3", "103.5", "--std", "0.229", "0.224", "0.225"], "looks 0-255 scaled but std"),
        (["--lr", "0"], "'lr' on the command line (--lr) must be > 0"),
        (["--lr", "-0.1"], "must be > 0"),
        (["--batch_size", "0"], "'batch_size'"),
        (["--image_resize", "0"], "'image_resize'"),
        (["--epoch_size", "0"], "'epoch_size'"),
        (["--reduction", "none"], "cannot train; use mean or sum"),
        (["--aug_splits", "3"], "AugMix splits"),
        (["--dataset", "cifar10"], "expects one of imagenet"),
    ],
)
def test_bad_values_are_one_line_and_exit_2_when_the_recipe_is_read(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Through the real entry point: nothing is built or scanned before the value is refused."""
    assert cli.main(["train", "--data_dir", str(tmp_path / "absent"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_3a_and_every_mindcv_policy_spelling_parse_when_read() -> None:
    for policy in ("3a", "3a-mstd0.5", "autoaug-mstd0.5", "autoaugr", "randaug-m9-mstd0.5-inc1", "augmix-m3-w3-d2",
                   "trivialaugwide-m31", "rand-m7-n3"):
        assert load_config(["--auto_augment", policy], purpose="train").auto_augment == policy


def test_o3_has_an_explicit_meaning_stated_once() -> None:
    """O3 runs as autocast (the plan) and says how that differs from MindSpore's O3 (the note)."""
    o3 = load_config(["-c", str(mindcv("res2net_50_ascend.yaml"))], purpose="train")
    assert amp_plan(o3, "cpu") == amp_plan(load_config(["--amp_level", "O2"], purpose="train"), "cpu")
    assert amp_plan(o3, "cuda").use_scaler and amp_plan(o3, "cuda").init_scale == 1024.0
    note = amp_level_note(o3, "cpu")
    assert note is not None and "torch.autocast in bfloat16" in note and "BatchNorm statistics" in note
    assert "float16" in (amp_level_note(o3, "cuda") or "")
    assert amp_level_note(load_config(["--amp_level", "O2"], purpose="train"), "cpu") is None
    assert amp_level_note(o3, "cpu", validation=True) is None  # val_amp_level stays O0
