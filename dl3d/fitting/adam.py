"""Adam for the fitting stages: torch's fused Adam kernel without ``torch.optim``.

``torch.optim.Adam(fused=True)`` runs ``torch._fused_adam_`` (one op for all parameters) behind an
``Optimizer`` whose first use imports ``torch._dynamo``: about 1 s in a fresh process, paid by every
fitting worker on its first shard, and about 40 µs of Python per step. :class:`FusedAdam` calls the same
op with the same state (step counts as float32 scalars, moments as zeros), so its steps equal
``torch.optim.Adam(params, lr, fused=True)``'s (tests/fitting/test_adam.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class FusedAdam:
    """Adam (betas 0.9 / 0.999, eps 1e-8, no weight decay) over ``params``; set :attr:`lr` between steps."""

    def __init__(self, params: Sequence[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        self.lr = float(lr)
        self.betas, self.eps = betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not have:
            return
        steps = [self.steps[i] for i in have]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_([self.params[i] for i in have], [self.params[i].grad for i in have],
                           [self.exp_avg[i] for i in have], [self.exp_avg_sq[i] for i in have], [], steps,
                           lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                           amsgrad=False, maximize=False)
