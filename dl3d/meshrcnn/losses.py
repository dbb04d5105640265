"""Mesh R-CNN's losses and its guard against exploding batches.

- Voxels: binary cross-entropy on logits, mean over every voxel.
- Meshes: for every refinement stage, chamfer distance and normal distance (the values and gradients
  of pytorch3d ``chamfer_distance``, with k-d tree nearest neighbours on a CPU: ``dl3d.mesh.nearest``)
  between ``num_samples`` points sampled from the predicted and from the GT meshes, with their normals,
  and ``mesh_edge_loss``, weighted, then summed (Pix3D) or averaged (ShapeNet) over the stages.
- :class:`LossGuard`: a batch whose loss exceeds ``factor`` times the moving average of earlier
  losses is skipped (``SKIP_LOSS_THRESH`` 50, ``LOSS_SKIP_GAMMA`` 0.9 in ``train_net_shapenet.py``),
  as is an update with a non-finite gradient. Its state is a buffer so it is checkpointed.
"""

from __future__ import annotations

import math

import torch
from pytorch3d.loss import mesh_edge_loss
from pytorch3d.ops import sample_points_from_meshes
from pytorch3d.structures import Meshes
from torch import Tensor, nn
from torch.nn import functional as F

from dl3d.mesh.nearest import chamfer


def voxel_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """logits, targets: (N, G, G, G); targets in {0, 1}. Mean BCE (0 with a gradient path for N = 0)."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def sample_gt(meshes: Meshes, num_samples: int) -> tuple[Tensor, Tensor]:
    """(N, S, 3) points and (N, S, 3) unit normals sampled uniformly on the GT surfaces."""
    return sample_points_from_meshes(meshes, num_samples=num_samples, return_normals=True)


def mesh_losses(stages: list[Meshes], gt_points: Tensor, gt_normals: Tensor, *, chamfer_weight: float,
                normal_weight: float, edge_weight: float, num_samples: int, reduction: str = "sum",
                gt_coord_thresh: float = 0.0) -> dict[str, Tensor]:
    """Weighted chamfer, normal and edge losses of every stage's meshes against the GT samples.

    stages: S Meshes of N meshes each (same frame as the GT points); gt_points, gt_normals: (N, P, 3).
    Returns ``chamfer``, ``normal``, ``edge`` (each already weighted and reduced over stages) and
    ``total``. With ``gt_coord_thresh > 0`` all of them are zeroed when a GT coordinate exceeds it
    (a bad RoI makes the unit-box targets arbitrarily large).
    """
    if not stages:
        raise ValueError("expected the meshes of at least one refinement stage")
    chamfer_terms, normal_terms, edge_terms = [], [], []
    for meshes in stages:
        points, point_normals = sample_points_from_meshes(meshes, num_samples=num_samples, return_normals=True)
        c, n = chamfer(points, gt_points, point_normals, gt_normals)
        chamfer_terms.append(c * chamfer_weight)
        normal_terms.append(n * normal_weight)
        edge_terms.append(mesh_edge_loss(meshes) * edge_weight)
    scale = 1.0 / len(stages) if reduction == "mean" else 1.0
    out = {"chamfer": sum(chamfer_terms) * scale, "normal": sum(normal_terms) * scale, "edge": sum(edge_terms) * scale}
    if gt_coord_thresh > 0 and gt_points.numel() and bool(gt_points.abs().max() > gt_coord_thresh):
        out = {k: v * 0.0 for k, v in out.items()}
    out["total"] = out["chamfer"] + out["normal"] + out["edge"]
    return out


class LossGuard(nn.Module):
    """Moving average of the training loss; decides which batches to skip.

    ``check(loss)`` returns False (skip) for a non-finite loss or one above ``factor`` x the moving
    average, and otherwise updates the average ``avg <- gamma avg + (1 - gamma) loss`` (the first
    finite loss starts it). ``factor = 0`` never skips a finite loss.
    """

    def __init__(self, factor: float = 50.0, gamma: float = 0.9):
        super().__init__()
        self.factor, self.gamma = factor, gamma
        self.register_buffer("moving_average", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("skipped", torch.tensor(0, dtype=torch.int64))

    def check(self, loss: float) -> bool:
        if not math.isfinite(loss):
            self.skipped += 1
            return False
        avg = float(self.moving_average)
        if math.isnan(avg):
            self.moving_average.fill_(loss)
            return True
        if self.factor > 0 and loss > self.factor * avg:
            self.skipped += 1
            return False
        self.moving_average.fill_(self.gamma * avg + (1 - self.gamma) * loss)
        return True


def gradients_finite(parameters) -> bool:
    """True when every gradient present is finite (the official check before ``optimizer.step()``)."""
    return all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)
