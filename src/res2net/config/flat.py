"""Flat recipes in general: any frozen dataclass whose fields carry a :class:`KeySpec`.

The classification schema (:class:`~res2net.config.schema.Config`) and the detection one
(:class:`~res2net.detection.config.DetectionConfig`) share this machinery, so a recipe of
either kind is read, type-checked and overridden from the command line the same way: an
unknown key names the closest known one, every value is checked when it is read, and
every mistake is one :class:`~res2net.errors.ConfigError` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from res2net.errors import ConfigError

from .keys import KeySpec
from .spelling import accept_both_spellings
from .values import CliTokens, closest, coerce, describe, is_bool_type, is_sequence_type

FROM_CLI = "on the command line"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@functools.cache
def specs_of(schema: type) -> dict[str, tuple[KeySpec, Any]]:
    """Every key of ``schema`` with its :class:`KeySpec` and Python type, in schema order."""
    hints = typing.get_type_hints(schema)
    return {f.name: (f.metadata["spec"], hints[f.name]) for f in dataclasses.fields(schema) if "spec" in f.metadata}


def default_of(schema: type, name: str) -> Any:
    return schema.__dataclass_fields__[name].default


def unknown_key(schema: type, name: str, where: str) -> ConfigError:
    """The error for a key ``schema`` does not have, pointing at the closest one."""
    return ConfigError(f"unknown config key '{name}' {where} (did you mean '{closest(name, specs_of(schema))}'?)")


def check_keys(schema: type, values: Any, source: str) -> Mapping[str, Any]:
    """Refuse anything but a mapping of ``schema``'s string keys."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source} must be a mapping of key: value, got {type(values).__name__}")
    for name in values:
        if not isinstance(name, str):
            raise ConfigError(f"config keys must be strings, got {name!r} in {source}")
        if name not in specs_of(schema):
            raise unknown_key(schema, name, f"in {source}")
    return values


def coerce_value(schema: type, name: str, raw: Any, where: str) -> Any:
    """Type-convert and check one value for key ``name`` of ``schema``."""
    spec, tp = specs_of(schema)[name]
    return coerce(name, spec, tp, raw, where)


def check_device(device: str) -> None:
    """The ``device`` key's grammar, shared by every schema that has one."""
    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"config key 'device' expects auto, cpu, mps, cuda or cuda:N, got {device!r}")


def recipe_yaml(values: Mapping[str, Any]) -> str:
    """A recipe's plain values as YAML in key order, which the schema reads back unchanged."""
    text: str = yaml.safe_dump(dict(values), sort_keys=False, default_flow_style=None)
    return text


def load_yaml_document(path: str) -> Any:
    """The parsed YAML of ``path`` (None for an empty file); unreadable or invalid is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a date like 2001-02-30
        raise ConfigError(f"config file {path} holds a value YAML cannot read: {exc}") from None


def read_recipe(schema: type, path: str) -> dict[str, Any]:
    """A recipe file as a mapping of ``schema``'s keys (values still raw)."""
    data = load_yaml_document(path)
    return {} if data is None else dict(check_keys(schema, data, path))


class RecipeParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are ConfigErrors, so callers print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def recipe_parser(schema: type, prog: str, description: str) -> RecipeParser:
    """A parser with ``-c/--config`` and one ``--key`` flag per key of ``schema``, grouped by
    ``KeySpec.group``. Flags default to "not given" (SUPPRESS) so that only what the user typed
    overrides the file; values stay text here and are converted by the schema."""
    parser = RecipeParser(prog=prog, description=description, allow_abbrev=False,
                          argument_default=argparse.SUPPRESS)
    groups: dict[str, Any] = {}
    for name, (spec, tp) in specs_of(schema).items():
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        flags, metavar = (["-c", "--config"], "FILE") if name == "config" else ([f"--{name}"], _metavar(spec, tp))
        group.add_argument(*flags, dest=name, metavar=metavar, help=_help(schema, name, spec, tp), **_arity(tp))
    return accept_both_spellings(parser, "underscore")  # MindCV's --num_classes; --num-classes works too


def typed_values(schema: type, parser: RecipeParser, argv: list[str]) -> dict[str, Any]:
    """Parse ``argv`` with ``parser``: the file's values, then the flags, all type-checked."""
    known, leftover = parser.parse_known_args(argv)
    for word in leftover:
        if word.startswith("--") and len(word) > 2:
            raise unknown_key(schema, word[2:].split("=", 1)[0], FROM_CLI)
        raise ConfigError(f"unexpected argument {word!r} {FROM_CLI} (flags look like --key value)")
    flags = vars(known)
    config_path = flags.pop("config", None)
    typed: dict[str, Any] = {}
    if config_path:
        where = f"in {config_path}"
        typed.update((n, coerce_value(schema, n, raw, where)) for n, raw in read_recipe(schema, config_path).items())
        typed["config"] = config_path
    for name, raw in flags.items():
        typed[name] = coerce_value(schema, name, CliTokens(raw) if isinstance(raw, list) else raw,
                                   f"{FROM_CLI} (--{name})")
    return typed


def _arity(tp: Any) -> dict[str, Any]:
    if is_bool_type(tp):
        return {"nargs": "?", "const": "True"}  # MindCV: `--distribute` alone means True
    if is_sequence_type(tp):
        return {"nargs": "+"}
    return {}


def _metavar(spec: KeySpec, tp: Any) -> str:
    if spec.choices:
        return "{" + ",".join(spec.choices) + "}"
    if is_bool_type(tp):
        return "BOOL"
    return "V" if is_sequence_type(tp) else "VALUE"


def _help(schema: type, name: str, spec: KeySpec, tp: Any) -> str:
    note = " [ignored on PyTorch]" if spec.ignored else " [res2net; not in MindCV]" if spec.ours else ""
    # argparse %-formats help strings.
    return f"{spec.help}; {describe(tp)}, default {default_of(schema, name)!r}{note}".replace("%", "%%")
