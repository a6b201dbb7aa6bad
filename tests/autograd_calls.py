"""Which inputs reach a custom autograd Function: how the norm tests see which kernels ran."""

from __future__ import annotations

import pytest
import torch


def record_calls(monkeypatch: pytest.MonkeyPatch, function: type[torch.autograd.Function]) -> list[tuple[int, ...]]:
    """Patches ``function.apply`` to record the shape of its first argument on every call."""
    taken: list[tuple[int, ...]] = []
    original = function.apply

    def counting(x: torch.Tensor, *args: object) -> object:
        taken.append(tuple(x.shape))
        return original(x, *args)

    monkeypatch.setattr(function, "apply", counting)
    return taken
