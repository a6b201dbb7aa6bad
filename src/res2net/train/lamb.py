"""LAMB (You et al., 2019): Adam whose update is rescaled per tensor by the ratio of the
weight norm to the update norm, which keeps very large batches stable.

torch.optim has no LAMB and MindCV recipes may ask for it (``opt: lamb``), so it is
written here on top of torch's foreach primitives (one kernel per step per group).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments; decoupled weight decay enters the trust ratio."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            states = [self.state[p] for p in params]
            for p, state in zip(params, states):
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
            step = states[0]["step"]
            exp_avg = [s["exp_avg"] for s in states]
            exp_avg_sq = [s["exp_avg_sq"] for s in states]
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            bias1, bias2 = 1 - beta1**step, 1 - beta2**step
            denom = torch._foreach_sqrt(torch._foreach_div(exp_avg_sq, bias2))
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(torch._foreach_div(exp_avg, bias1), denom)
            if group["weight_decay"]:
                torch._foreach_add_(updates, params, alpha=group["weight_decay"])
            weight_norms = torch._foreach_norm(params)
            update_norms = torch._foreach_norm(updates)
            for p, update, w_norm, u_norm in zip(params, updates, weight_norms, update_norms):
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.add_(update * trust, alpha=-group["lr"])
        return loss
