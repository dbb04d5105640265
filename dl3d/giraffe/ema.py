"""An exponential moving average of a module's parameters, kept as buffers of the module itself.

DistributedDataParallel refuses a module without trainable parameters, so the EMA weights are not a
module of their own: :func:`attach_ema` adds a parameter-free child ``ema`` holding one buffer per
parameter (its name with ``.`` replaced by ``__``). They travel in the module's ``state_dict`` (so
checkpoints carry them) and DDP's buffer broadcast keeps them equal across ranks (they are equal anyway:
every rank averages the same parameters).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EmaBuffers(nn.Module):
    """Buffers mirroring the parameters of a module (no parameters of its own)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        for name, p in module.named_parameters():
            self.register_buffer(name.replace(".", "__"), p.detach().clone())


def attach_ema(module: nn.Module) -> nn.Module:
    """Give ``module`` an ``ema`` child initialised to its current parameters; returns ``module``."""
    if hasattr(module, "ema"):
        raise ValueError(f"{type(module).__name__} already has an 'ema' attribute")
    module.ema = EmaBuffers(module)  # registered after named_parameters() was read: holds no copy of itself
    return module


@torch.no_grad()
def update_ema(module: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * param`` for every parameter of ``module`` (official ``update_average``)."""
    ema = module.ema
    for name, p in module.named_parameters():
        buf = getattr(ema, name.replace(".", "__"))
        buf.mul_(beta).add_(p.detach(), alpha=1.0 - beta)


def ema_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters are the EMA values (its ``ema`` child removed), in eval mode."""
    out = copy.deepcopy(module)
    ema = out.ema
    del out.ema
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.copy_(getattr(ema, name.replace(".", "__")))
    return out.eval().requires_grad_(False)
