"""Property tests for the recipe parser: valid values survive YAML and flags; anything else is a ConfigError."""

from __future__ import annotations

import re
import string
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from res2net.config import Config, key_specs, load_config, schema_keys
from res2net.config.keys import KeySpec
from res2net.errors import ConfigError

KEYS = schema_keys()
# Generated separately (they constrain each other) or not at all: `config` names the file that
# was read, and the two legacy spellings translate into other keys (unit-tested).
SPECIAL = {"config", "mean", "std", "re_value", "device", "filter_bias_and_bn", "dynamic_loss_scale"}
NONE_WORDS = {"none", "null", "~"}
SUGGESTION = re.compile(r"\(did you mean '([^']*)'\?\)$")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).filter(
    lambda s: not s.startswith("-")  # a flag-like word would be read as a flag on the command line
)


# Choices the cross-key checks refuse with a reason of their own (a per-sample loss cannot train).
REFUSED_CHOICES = {"none"}
# Schedulers that shape the whole run and so refuse a warm-up and per-epoch stairs.
WHOLE_RUN_SCHEDULERS = {"one_cycle", "cyclic"}


def spec_name(spec: KeySpec) -> str:
    return next(name for name, (candidate, _) in key_specs().items() if candidate is spec)


def finite_floats(spec: KeySpec) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=spec.minimum, max_value=spec.maximum, exclude_min=spec.exclusive_minimum and spec.minimum is not None,
        allow_nan=False, allow_infinity=False,
    )


def scalar(spec: KeySpec, tp: Any) -> st.SearchStrategy[Any]:
    """Valid values of a non-optional key, as written in a recipe (aliases included)."""
    if spec.refused:
        return st.just(Config.__dataclass_fields__[spec_name(spec)].default)
    if spec.choices:
        choices = tuple(c for c in spec.choices if c not in REFUSED_CHOICES)
        return st.sampled_from(choices + tuple(alias for alias, _ in spec.aliases))
    if spec.check is not None:  # auto_augment: policy strings with options
        return st.sampled_from(["3a", "autoaug", "autoaugr-mstd0.5", "randaug-m9-mstd0.5", "rand-m7-n3-mstd101",
                                "trivialaugwide", "augmix-m3-w3-d2-a0.5"])
    if tp is bool:
        return st.booleans()
    if tp is int:
        low = int(spec.minimum) if spec.minimum is not None else -(10**9)
        high = int(spec.maximum) if spec.maximum is not None else 10**9
        return st.integers(low, high)
    if tp is float:
        return finite_floats(spec)
    if tp is str:
        return safe_text
    element = typing.get_args(tp)[0]
    inner = st.integers(0, 10**6) if element is int else finite_floats(spec)
    if typing.get_args(tp)[1] is Ellipsis:
        return st.lists(inner, min_size=1, max_size=5).map(tuple)
    return st.lists(inner, min_size=2, max_size=2).map(lambda pair: tuple(sorted(pair)))


def value_of(name: str) -> st.SearchStrategy[Any]:
    spec, tp = key_specs()[name]
    args = typing.get_args(tp)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        some = scalar(spec, inner)
        if inner is str:
            some = some.filter(lambda s: s.strip().lower() not in NONE_WORDS)
        return st.one_of(st.none(), some)
    return scalar(spec, tp)


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid recipe: a subset of keys with valid values."""
    names = draw(st.sets(st.sampled_from([k for k in KEYS if k not in SPECIAL]), max_size=25))
    values = {name: draw(value_of(name)) for name in names}
    if draw(st.booleans()):  # three values, both on the 0-1 scale or both on MindCV's 0-255 scale
        scale = draw(st.sampled_from([1.0, 255.0]))
        low = 0.002 if scale == 1.0 else 1.01  # values above 1 only ever mean 0-255
        values["mean"] = tuple(draw(st.lists(st.floats(low, scale), min_size=3, max_size=3)))
        std_range = (0.001, 0.5) if scale == 1.0 else (1.01, 128.0)
        values["std"] = tuple(draw(st.lists(st.floats(*std_range), min_size=3, max_size=3)))
    if draw(st.booleans()):
        values["re_value"] = draw(st.one_of(
            st.floats(0, 255), st.just("random"), st.lists(st.floats(0, 255), min_size=3, max_size=3).map(tuple)))
    if "scheduler" in values and canonical("scheduler", values["scheduler"]) in WHOLE_RUN_SCHEDULERS:
        values.update(warmup_epochs=0, lr_epoch_stair=False)  # they take neither (a cross-key check, unit-tested)
    if draw(st.booleans()):
        values["device"] = draw(st.sampled_from(["auto", "cpu", "cuda", "cuda:3", "mps"]))
    return values


def canonical(name: str, value: Any) -> Any:
    """What the Config holds for a valid value: enum aliases and case resolved, numbers typed."""
    spec, tp = key_specs()[name]
    if isinstance(value, str) and spec.choices:
        return {**{c.lower(): c for c in spec.choices}, **dict(spec.aliases)}.get(value.lower(), value)
    if isinstance(value, int) and not isinstance(value, bool) and float in _members(tp):
        return float(value)
    return value


def _members(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) or (tp,)


def as_argv(values: dict[str, Any]) -> list[str]:
    """The command line that sets ``values``."""
    argv: list[str] = []
    for name, value in values.items():
        words = value if isinstance(value, tuple) else (value,)
        argv += [f"--{name}", *("None" if w is None else repr(w) if isinstance(w, float) else str(w) for w in words)]
    return argv


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recipes")


@SETTINGS
@given(recipes())
def test_valid_values_land_in_config_and_round_trip_through_yaml(folder: Path, values: dict[str, Any]) -> None:
    cfg = Config.from_dict(values)
    for name, value in values.items():
        assert getattr(cfg, name) == canonical(name, value), name
    assert cfg.provided == set(values)
    path = folder / "round_trip.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    reloaded = load_config(["-c", str(path)], purpose="train")
    assert reloaded.to_dict() == {**cfg.to_dict(), "config": str(path)}


@SETTINGS
@given(recipes())
def test_valid_values_round_trip_through_flags(values: dict[str, Any]) -> None:
    assert load_config(as_argv(values), purpose="train") == Config.from_dict(values)


key_like = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=30).filter(
    lambda k: k not in KEYS and k != "help"
)


@SETTINGS
@given(key_like, st.sampled_from(["yaml", "cli"]))
def test_unknown_keys_are_refused_with_a_schema_key_suggestion(name: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        if where == "yaml":
            Config.from_dict({name: 1})
        else:
            load_config([f"--{name}", "1"], purpose="validate")
    message = str(info.value)
    assert f"unknown config key '{name}'" in message and info.value.exit_code == 2
    match = SUGGESTION.search(message)
    assert match is not None and match.group(1) in KEYS


yaml_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def outcome(call: typing.Callable[[], Config]) -> None:
    """Run ``call``; a Config or a one-line ConfigError are the only acceptable results."""
    try:
        assert isinstance(call(), Config)
    except ConfigError as exc:
        assert exc.exit_code == 2 and "\n" not in str(exc)


@SETTINGS
@given(st.dictionaries(st.sampled_from(KEYS), yaml_junk, max_size=4))
def test_junk_values_in_a_mapping_only_raise_config_error(values: dict[str, Any]) -> None:
    outcome(lambda: Config.from_dict(values))


flag_words = st.sampled_from(["-c", *(f"--{k}" for k in KEYS), "--", "-x", "--=", "None", "True", "0.5"])
junk_words = st.text(max_size=12).filter(lambda w: not (w.startswith("-h") or w == "--help"))


@SETTINGS
@given(st.lists(flag_words | junk_words, max_size=8))
def test_junk_command_lines_only_raise_config_error(argv: list[str]) -> None:
    outcome(lambda: load_config(argv, purpose="train"))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=15)), max_size=5), st.text(max_size=30))
def test_junk_recipe_files_only_raise_config_error(folder: Path, lines: list[tuple[str, str]], tail: str) -> None:
    path = folder / "junk.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines) + tail, encoding="utf-8", errors="surrogatepass")
    outcome(lambda: load_config(["-c", str(path)], purpose="train"))


def test_yaml_dump_of_defaults_is_stable() -> None:
    """Saved configs are plain YAML; the default config survives a dump/load unchanged."""
    assert yaml.safe_load(Config().to_yaml()) == Config().to_dict()
