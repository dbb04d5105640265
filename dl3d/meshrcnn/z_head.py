"""Z head: regress an object's depth extent from its RoI, as log(dz / box height).

As the official ``FastRCNNFCHead`` + ``z_rcnn_loss``: ``fcs`` fully connected layers of ``fc_dim``
(ReLU, Xavier-uniform init) on the flattened 7 x 7 RoI features, then a linear predictor (normal
init, std 0.001, bias 0) with one output per class (or one, class-agnostic). The target is
``log(dz / h)`` with ``dz`` from ``unit_box.depth_extent_target`` (pixels) and ``h`` the RoI's height
(pixels); the loss is smooth-L1 summed over the RoIs and divided by their number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MAX_LOG_DZ = math.log(1000.0 / 16)
"""Predictions are clamped to this at inference (``z_rcnn_inference``)."""


class ZHead(nn.Module):
    """(N, C, P, P) RoI features -> (N, classes) predicted log(dz / box height)."""

    def __init__(self, in_channels: int, pooler: int = 7, fcs: int = 2, fc_dim: int = 1024, classes: int = 1):
        super().__init__()
        dims = [in_channels * pooler * pooler] + [fc_dim] * fcs
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.predictor = nn.Linear(dims[-1], classes)
        for fc in self.fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.predictor(x)


def select_class(pred: Tensor, labels: Tensor) -> Tensor:
    """(N, C) per-class predictions (C = 1: class-agnostic) and (N,) labels in 1..C -> (N,)."""
    if pred.shape[1] == 1:
        return pred[:, 0]
    return pred[torch.arange(pred.shape[0], device=pred.device), labels - 1]


def z_loss(pred_log_dz: Tensor, dz: Tensor, box_heights: Tensor, beta: float = 1.0) -> Tensor:
    """Smooth-L1 between (N,) predicted log(dz/h) and the target log(dz / box_heights); mean over N (0 for N = 0)."""
    if pred_log_dz.numel() == 0:
        return pred_log_dz.sum() * 0
    target = torch.log(dz / box_heights)
    return F.smooth_l1_loss(pred_log_dz, target, beta=beta, reduction="sum") / pred_log_dz.numel()


def predicted_dz(pred_log_dz: Tensor, box_heights: Tensor) -> Tensor:
    """(N,) dz in pixels from the head's output: exp(clamp(log, max=log(1000/16))) * box height."""
    return torch.exp(pred_log_dz.clamp(max=MAX_LOG_DZ)) * box_heights
