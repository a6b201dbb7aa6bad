"""Normalisation statistics as recipes write them (MindCV's 0-255 or torchvision's 0-1 scale), checked.

Pure Python, so the schema checks a recipe's ``mean``/``std`` when it is read without importing
torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

Stats = tuple[float, float, float]


def normalize_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[Stats, Stats]:
    """Return (mean, std) on the 0-1 scale, accepting MindCV's 0-255 values as well.

    MindCV recipes give ``mean: [123.675, 116.28, 103.53]``; torchvision-style code gives
    ``0.485...``. A value above 1 can only be on the 0-255 scale, so that decides; a mean on
    one scale with a std on the other is a mistake we refuse rather than guess about.
    """
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (R, G, B), got {list(mean)} and {list(std)}")
    if min(std) <= 0:
        raise ValueError(f"std values must be positive, got {list(std)}")
    # A 0-1 std is at most 0.5 (values in [0, 1]); a mean of zeros fits either scale.
    mean_255, std_255 = max(mean) > 1, max(std) > 1
    mean_01 = 0 < max(mean) <= 1
    if mean_255 != std_255 and (mean_255 or mean_01):
        scales = ("0-255", "0-1") if mean_255 else ("0-1", "0-255")
        raise ValueError(
            f"mean {list(mean)} looks {scales[0]} scaled but std {list(std)} looks {scales[1]} scaled; "
            "give both on the same scale"
        )
    divisor = 255.0 if mean_255 or std_255 else 1.0
    m = tuple(float(v) / divisor for v in mean)
    s = tuple(float(v) / divisor for v in std)
    return (m[0], m[1], m[2]), (s[0], s[1], s[2])
