"""Turning a raw value (from YAML or from command-line text) into the typed value a key wants.

One function handles both sources so that ``lr: 1e-4`` in a file (which YAML 1.1 reads as
the *string* "1e-4") and ``--lr 1e-4`` on the command line give the same float, and so
that every mistake becomes a :class:`~res2net.errors.ConfigError` naming the key, the
expected type and the value that was given.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from res2net.errors import ConfigError

from .keys import KeySpec

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_NONE = frozenset({"none", "null", "~"})
_INT = re.compile(r"[+-]?\d+")
_SEQUENCE_SEPARATORS = re.compile(r"[,\s]+")


class CliTokens(tuple):  # type: ignore[type-arg]
    """The words given after one ``--key`` flag that takes a list.

    Marking them lets a scalar member of a union (``re_value``: a number, "random" or
    three numbers) accept a single word, without letting a YAML list stand in for a
    scalar.
    """


class _Mismatch(Exception):
    """Internal: the value does not fit the type; caught and reworded by :func:`coerce`."""


def closest(word: str, candidates: Iterable[str]) -> str:
    """The candidate most similar to ``word`` (difflib ratio, ignoring case).

    Always returns one, so that every "unknown" message can point somewhere.
    """
    by_lower = {c.lower(): c for c in candidates}
    best = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.0)
    return by_lower[best[0]] if best else next(iter(by_lower.values()))


def describe(tp: Any) -> str:
    """Human wording of a schema type for error messages and ``--help``."""
    args = typing.get_args(tp)
    if _is_union(tp):
        return " or ".join("None" if a is type(None) else describe(a) for a in args)
    if typing.get_origin(tp) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    return {bool: "a boolean (True/False)", int: "an integer", float: "a number", str: "a string"}[tp]


def is_sequence_type(tp: Any) -> bool:
    """Whether the key takes a list (on the command line: several words after the flag)."""
    if _is_union(tp):
        return any(is_sequence_type(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple


def is_bool_type(tp: Any) -> bool:
    """Whether the key is a plain boolean (``--flag`` alone then means True, as in MindCV)."""
    return tp is bool


def coerce(name: str, spec: KeySpec, tp: Any, raw: Any, where: str) -> Any:
    """Convert ``raw`` to ``tp`` and check it against ``spec``; raise ConfigError if it does not fit.

    ``where`` says where the value came from ("in res2net_50.yaml", "on the command line")
    and ends up in the message.
    """
    try:
        value = _convert(raw, tp)
    except _Mismatch:
        raise ConfigError(
            f"config key '{name}' {where} expects {describe(tp)}, got {_show(raw)}"
        ) from None
    return _check(name, spec, value, where)


def _convert(raw: Any, tp: Any) -> Any:
    if _is_union(tp):
        members = typing.get_args(tp)
        if type(None) in members and _is_none(raw):
            return None
        for member in members:
            if member is type(None):
                continue
            try:
                return _convert(raw, member)
            except _Mismatch:
                continue
        raise _Mismatch
    if typing.get_origin(tp) is tuple:
        return _convert_tuple(raw, typing.get_args(tp))
    if isinstance(raw, CliTokens):
        if len(raw) != 1:
            raise _Mismatch
        raw = raw[0]
    if tp is bool:
        return _to_bool(raw)
    if tp is int:
        return _to_int(raw)
    if tp is float:
        return _to_float(raw)
    if tp is str and isinstance(raw, str):
        return raw
    raise _Mismatch


def _convert_tuple(raw: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(raw, str):
        items: list[Any] = [w for w in _SEQUENCE_SEPARATORS.split(raw.strip().strip("[]()")) if w]
    elif isinstance(raw, CliTokens):
        items = [w for word in raw for w in _SEQUENCE_SEPARATORS.split(word.strip("[]()")) if w]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise _Mismatch
    variadic = len(args) == 2 and args[1] is Ellipsis
    if not variadic and len(items) != len(args):
        raise _Mismatch
    if not items:
        raise _Mismatch
    element = args[0]
    return tuple(_convert(item, element) for item in items)


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Mismatch


def _to_int(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and _INT.fullmatch(raw.strip()):
        return int(raw.strip())
    raise _Mismatch


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise _Mismatch
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an int beyond float's range
            raise _Mismatch from None
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise _Mismatch from None
    else:
        raise _Mismatch
    if not math.isfinite(value):
        raise _Mismatch
    return value


def _check(name: str, spec: KeySpec, value: Any, where: str) -> Any:
    """Enumerations, grammars and ranges: the part of validity that types cannot express."""
    if isinstance(value, str) and spec.choices:
        return _check_choice(name, spec, value, where)
    if spec.check is not None and value is not None:
        try:
            spec.check(value)
        except ValueError as err:
            raise ConfigError(f"config key '{name}' {where}: {err}") from None
    numbers = value if isinstance(value, tuple) else (value,)
    for number in numbers:
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            _check_range(name, spec, number, where)
    return value


def _check_choice(name: str, spec: KeySpec, value: str, where: str) -> str:
    canonical = {c.lower(): c for c in spec.choices}
    canonical.update((alias.lower(), target) for alias, target in spec.aliases)
    if value.lower() in canonical:
        return canonical[value.lower()]
    raise ConfigError(
        f"config key '{name}' {where} expects one of {', '.join(spec.choices)}; "
        f"got {value!r} (did you mean '{closest(value, spec.choices)}'?)"
    )


def _check_range(name: str, spec: KeySpec, number: float, where: str) -> None:
    low, high = spec.minimum, spec.maximum
    too_low = low is not None and (number <= low if spec.exclusive_minimum else number < low)
    too_high = high is not None and number > high
    if too_low or too_high:
        lower = "" if low is None else f"{'>' if spec.exclusive_minimum else '>='} {low:g}"
        upper = "" if high is None else f"<= {high:g}"
        bound = " and ".join(b for b in (lower, upper) if b)
        raise ConfigError(f"config key '{name}' {where} must be {bound}, got {number!r}")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _is_none(raw: Any) -> bool:
    if isinstance(raw, CliTokens) and len(raw) == 1:
        raw = raw[0]
    return raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE)


def _plural(tp: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}[tp]


def _show(raw: Any) -> str:
    text = repr(" ".join(raw)) if isinstance(raw, CliTokens) else repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."
