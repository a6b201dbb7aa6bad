"""Weights drawn from each parameter's name: the same tensors in any environment and any order.

Fixtures made with another project's own code (mmdetection, in its own environment) record
only names, shapes and outputs; the tests regenerate the weights here from the names, so no
large weight file is committed. Only torch is used, so the fixture scripts import it too.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import torch


def seeded_tensor(name: str, shape: Sequence[int]) -> torch.Tensor:
    """A tensor for parameter ``name``: He-scaled convolution weights, BatchNorm affine
    parameters and running statistics away from their identity values (so a wrong mapping
    of any of them changes outputs), counters as ones."""
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.ones((), dtype=torch.long)
    if leaf in ("weight", "bias") and len(shape) == 1:  # BatchNorm affine or a bias
        base = 1.0 if leaf == "weight" else 0.0
        return base + (torch.rand(tuple(shape), generator=gen) - 0.5) * 0.5
    if leaf == "running_mean":
        return (torch.rand(tuple(shape), generator=gen) - 0.5) * 0.2
    if leaf == "running_var":
        return torch.rand(tuple(shape), generator=gen) * 0.5 + 0.75
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return torch.randn(tuple(shape), generator=gen) * (2.0 / fan_in) ** 0.5 * 0.7


def seeded_state(shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """``seeded_tensor`` for every ``name: shape``."""
    return {name: seeded_tensor(name, shape) for name, shape in shapes.items()}
