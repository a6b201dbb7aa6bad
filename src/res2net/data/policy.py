"""The grammar of ``auto_augment`` strings (MindCV's and timm's ``randaug-m9-mstd0.5``...), checked.

Pure Python, so a recipe's string is validated when the recipe is read (by the schema, which
``--help`` and every command load) without importing torchvision; :mod:`.autoaugment` builds
the transforms from a parsed policy.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

LEVEL_DENOM = 10
BINS_PER_LEVEL = 10
_SECTION = re.compile(r"^([a-z]+)(\d+(?:\.\d*)?)$")
_POLICIES = {
    "randaug": "randaug",
    "rand": "randaug",
    "autoaug": "autoaug",
    "autoaugr": "autoaug",
    "original": "autoaug",
    "originalr": "autoaug",
    "3a": "3a",
    "trivialaugwide": "trivialaugwide",
    "augmix": "augmix",
}
_OPTIONS = {
    "randaug": ("m", "n", "mstd", "mmax", "inc"),
    "autoaug": ("mstd",),
    "3a": ("mstd",),
    "trivialaugwide": ("m",),
    "augmix": ("m", "w", "d", "a"),
}


@dataclass(frozen=True)
class AutoAugmentPolicy:
    """A parsed ``auto_augment`` string: the policy name and its numeric options, all checked.

    Parsing is separate from building so that a recipe's string is validated when the recipe is
    read (a typo must not surface hours later, when the first worker builds its transform).
    """

    name: str
    spec: str
    options: Mapping[str, float] = field(default_factory=dict)

    def get(self, key: str, default: float) -> float:
        return float(self.options.get(key, default))


def parse_policy(spec: str) -> AutoAugmentPolicy:
    """Parse and check an ``auto_augment`` string; ValueError naming the offending part.

    Accepted (sections after the name in any order, all optional):
      ``randaug-m<0..10>-n<ops>-mstd<std>-mmax<0..10>-inc<0|1>`` (timm's ``rand-...`` too; MindCV's
      defaults m10, n2, mstd0.5), ``autoaug`` / ``autoaugr`` (timm: ``original[r]``; ImageNet
      policy), ``3a`` (DeiT III's three-augment as MindCV defines it: one of solarize,
      greyscale or Gaussian blur per image), ``trivialaugwide-m<bins>``,
      ``augmix-m<severity>-w<width>-d<depth>-a<alpha>``.
    """
    name, options = _split(spec)
    policy = AutoAugmentPolicy(name=name, spec=spec, options=options)
    if name == "randaug":
        if policy.get("mmax", LEVEL_DENOM) > LEVEL_DENOM:
            raise ValueError(f"auto_augment {spec!r}: mmax above {LEVEL_DENOM} exceeds torchvision's operation ranges")
        if not 0 <= policy.get("m", LEVEL_DENOM) <= LEVEL_DENOM:
            raise ValueError(f"auto_augment {spec!r}: magnitude m must be in 0..{LEVEL_DENOM}")
        if policy.get("inc", 1) not in (0, 1):
            raise ValueError(f"auto_augment {spec!r}: inc must be 0 or 1")
        _as_int(spec, "n", policy.get("n", 2), minimum=1)
    elif name == "trivialaugwide":
        _as_int(spec, "m", policy.get("m", 31), minimum=2)
    elif name == "augmix":
        for option, default in (("m", 3), ("w", 3), ("d", 1)):
            _as_int(spec, option, policy.get(option, default), minimum=1)
        if policy.get("a", 1.0) <= 0:
            raise ValueError(f"auto_augment {spec!r}: alpha a must be > 0")
    return policy


def _split(spec: str) -> tuple[str, dict[str, float]]:
    valid = "randaug-m9-mstd0.5, autoaug, 3a, trivialaugwide, augmix-m3"
    parts = spec.strip().lower().split("-")
    name = _POLICIES.get(parts[0])
    if name is None:
        closest = difflib.get_close_matches(parts[0], _POLICIES, n=1, cutoff=0.0)
        hint = f" (did you mean '{closest[0]}'?)" if closest else ""
        raise ValueError(f"auto_augment {spec!r}: unknown policy {parts[0]!r}{hint}; examples of valid values: {valid}")
    options: dict[str, float] = {}
    for part in parts[1:]:
        match = _SECTION.match(part)
        if match is None or match.group(1) not in _OPTIONS[name]:
            allowed = ", ".join(_OPTIONS[name]) or "none"
            raise ValueError(f"auto_augment {spec!r}: unknown option {part!r} for {parts[0]} (options: {allowed})")
        options[match.group(1)] = float(match.group(2))
    return name, options


def _as_int(spec: str, key: str, value: float, *, minimum: int) -> int:
    if value != int(value) or value < minimum:
        raise ValueError(f"auto_augment {spec!r}: {key} must be an integer >= {minimum}")
    return int(value)
