"""``load_config``: MindCV's command line (``-c FILE`` then ``--key value`` overrides) on our schema.

Precedence is MindCV's: schema defaults, then the YAML file, then flags. Unlike MindCV,
every value is type-checked wherever it came from, and every mistake (unknown key, bad
value, argparse's own complaints) is one :class:`~res2net.errors.ConfigError` line with
exit code 2 instead of a traceback or a usage dump.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

from res2net.errors import ConfigError

from .keys import KeySpec
from .schema import Config, build, check_mapping, coerce_key, key_specs, unknown_key_error
from .values import CliTokens, describe, is_bool_type, is_sequence_type

Purpose = Literal["train", "validate"]
_DESCRIPTIONS = {
    "train": "Train a Res2Net model from a MindCV-compatible recipe.",
    "validate": "Validate a Res2Net model with a MindCV-compatible recipe.",
}
_FROM_CLI = "on the command line"


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are ConfigErrors, so callers print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def load_config(argv: list[str], *, purpose: Purpose) -> Config:
    """Parse MindCV-style arguments (``-c recipe.yaml --lr 0.2 ...``) into a validated Config.

    ``purpose`` ("train" or "validate") selects the program name and description shown
    by ``--help`` and in messages; both share one schema, as in MindCV.
    """
    if purpose not in _DESCRIPTIONS:
        raise ValueError(f"purpose must be 'train' or 'validate', got {purpose!r}")
    parser = build_parser(purpose)
    known, leftover = parser.parse_known_args(argv)
    _refuse_leftovers(leftover)
    flags = vars(known)
    config_path = flags.pop("config", None)
    typed: dict[str, Any] = {}
    if config_path:
        file_values = read_yaml(config_path)
        where = f"in {config_path}"
        typed.update((name, coerce_key(name, raw, where)) for name, raw in file_values.items())
        typed["config"] = config_path
    for name, raw in flags.items():
        where = f"{_FROM_CLI} (--{name})"
        typed[name] = coerce_key(name, CliTokens(raw) if isinstance(raw, list) else raw, where)
    return build(typed)


def build_parser(purpose: Purpose) -> argparse.ArgumentParser:
    """The argparse parser with one ``--key`` flag per schema key, grouped as in MindCV.

    Flags default to "not given" (SUPPRESS) so that only what the user typed overrides
    the file; values stay text here and are converted by the schema.
    """
    parser = _Parser(
        prog=f"{purpose}.py",
        description=_DESCRIPTIONS[purpose],
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    groups: dict[str, Any] = {}
    for name, (spec, tp) in key_specs().items():
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        flags, metavar = (["-c", "--config"], "FILE") if name == "config" else ([f"--{name}"], _metavar(spec, tp))
        group.add_argument(*flags, dest=name, metavar=metavar, help=_help(name, spec, tp), **_arity(tp))
    return parser


def read_yaml(path: str) -> dict[str, Any]:
    """Read a recipe file into a mapping of known keys (values still raw)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a date like 2001-02-30
        raise ConfigError(f"config file {path} holds a value YAML cannot read: {exc}") from None
    if data is None:
        return {}
    return dict(check_mapping(data, path))


def _refuse_leftovers(leftover: list[str]) -> None:
    """Arguments argparse did not recognise: unknown ``--key`` flags or stray words."""
    for word in leftover:
        if word.startswith("--") and len(word) > 2:
            raise unknown_key_error(word[2:].split("=", 1)[0], _FROM_CLI)
        raise ConfigError(f"unexpected argument {word!r} {_FROM_CLI} (flags look like --key value)")


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


def _help(name: str, spec: KeySpec, tp: Any) -> str:
    default = Config.__dataclass_fields__[name].default
    note = " [ignored on PyTorch]" if spec.ignored else " [res2net; not in MindCV]" if spec.ours else ""
    # argparse %-formats help strings.
    return f"{spec.help}; {describe(tp)}, default {default!r}{note}".replace("%", "%%")
