"""The per-step SMPLify objective as one autograd node: value and gradient computed together.

``stages.stage_loss`` evaluates this at every Adam step. Written with autograd it is some fifty
small ops forward and twice as many backward; at a few hundred rows per step their fixed cost is
most of the time. ``StageTerms`` computes the same sum (the terms of ``stages.evaluate``: robust
reprojection, max-mixture pose prior, bending, shape, interpenetration, temporal) and its gradient
with respect to the body model's outputs and the pose and shape parameters in one pass; the body
model's own backward then runs as before. Equal to autograd through ``evaluate`` to float rounding
(``tests/fitting/test_fit_stages.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


__all__ = ["LossConstants", "StageTerms", "chosen_component_grad", "loss_and_grads"]

MIN_DEPTH = 1e-2
"""``objective.project_points``' default ``min_depth``, metres."""


@dataclass
class LossConstants:
    """What the objective needs that is fixed within a stage (tensors on the fitting device).

    kp_index (J,) the model's keypoints in ``cat([joints, extra], 1)`` (``StageTerms``' inputs);
    xy (N, J, 2) observed pixels; data_w (N, J, 1) ``data_weight * sigma² * weight²``; focal (N,);
    principal_point (N, 2); sigma2 = sigma² (px²); bound: residual clamp, px.
    prior_l (69, K*69) the K precision Cholesky factors side by side; prior_ml (K, 69) ``mu_k L_k``;
    prior_nlc (K,) ``-log c_k``; pose_w2; angle_index (4,), angle_scale (4,) = 2 * signs; bend_w2;
    shape_w (T, 1) ``w_shape²`` x rows per betas row; interp_w; pair_map (P, 24) joints -> sphere
    centre differences; reach (P, N) radius sums, pair-major (None: no interpenetration term);
    temporal_w (N - 2, 1, 1) ``w_temporal`` x consecutive (empty: no temporal term).
    """

    kp_index: Tensor
    xy: Tensor
    data_w: Tensor
    focal: Tensor
    principal_point: Tensor
    sigma2: float
    bound: float
    prior_l: Tensor
    prior_ml: Tensor
    prior_nlc: Tensor
    pose_w2: float
    angle_index: Tensor
    angle_scale: Tensor
    bend_w2: float
    shape_w: Tensor
    interp_w: float
    pair_map: Tensor | None
    reach: Tensor | None
    temporal_w: Tensor


def prior_factors(means: Tensor, prec_chol: Tensor) -> tuple[Tensor, Tensor]:
    """(K, 69) means, (K, 69, 69) Cholesky factors -> (69, K*69) factors side by side, (K, 69) ``mu_k L_k``."""
    k, d = means.shape
    return prec_chol.permute(1, 0, 2).reshape(d, k * d), torch.einsum("kd,kde->ke", means, prec_chol)


def chosen_component_grad(zq: Tensor, arg: Tensor, prior_l: Tensor, grouped: bool) -> Tensor:
    """(N, K, D) whitened residuals ``z_k = (x - mu_k) L_k``, (N,) each row's component, (D, K*D) factors
    -> (N, D): ``z_arg L_arg^T``, the max-mixture prior's gradient (before its weight).

    ``grouped``: the rows are sorted by component and each group takes one (rows, D) @ (D, D) product, 1/K
    of the arithmetic of the dense form (``(z * onehot) @ prior_l^T``, which wastes the K - 1 zero blocks).
    With 8 components, 4,000 rows and one CPU thread a whole fit took 3.3-3.6 s dense, 3.1-3.2 s grouped.
    The group sizes are read on the host, a sync a GPU step would wait for, so other devices take the dense
    form.
    """
    n, k, d = zq.shape
    if not grouped or n == 0:
        onehot = torch.zeros(n, k, 1, dtype=zq.dtype, device=zq.device).scatter_(1, arg.view(n, 1, 1), 1.0)
        return (zq * onehot).view(n, k * d) @ prior_l.t()
    order = torch.argsort(arg)
    chosen = zq[order, arg.index_select(0, order)]  # (N, D), rows grouped by component
    groups = chosen.split(torch.bincount(arg, minlength=k).tolist())
    parts = [z @ prior_l[:, j * d:(j + 1) * d].t() for j, z in enumerate(groups) if z.shape[0]]
    return torch.empty_like(chosen).index_copy_(0, order, torch.cat(parts))


def loss_and_grads(c: LossConstants, joints: Tensor, extra: Tensor, pose: Tensor,
                   betas: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The objective (scalar) and its gradients.

    joints: (N, 24, 3) camera frame, metres; extra: (N, E, 3) more model points, same frame (the
    keypoints are ``cat([joints, extra], 1)[:, c.kp_index]``); pose: (N, 69) radians; betas: (T, B).
    Returns the loss (px²-weighted sum, 0-dim) and its gradients with respect to joints, extra,
    pose and betas (same shapes).
    """
    both = torch.cat([joints, extra], 1)
    kp = both.index_select(1, c.kp_index)
    # Reprojection: sum data_w * r² / (r² + sigma²) over clamped residuals r.
    z = kp[..., 2:3]
    zc = z.clamp_min(MIN_DEPTH)
    f = c.focal[:, None, None]
    scale = f / zc
    res = kp[..., :2] * scale + c.principal_point[:, None, :] - c.xy
    inside = (res >= -c.bound) & (res <= c.bound)
    res = res.clamp(-c.bound, c.bound)
    sq = res * res
    den = sq + c.sigma2
    frac = c.data_w / den
    loss = (frac * sq).sum()
    g_res = (2 * c.sigma2) * frac / den * res * inside
    g_xy = g_res * scale
    g_z = -(g_res * kp[..., :2]).sum(-1, keepdim=True) * (scale / zc) * (z >= MIN_DEPTH)
    g_both = torch.zeros_like(both).index_add_(1, c.kp_index, torch.cat([g_xy, g_z], -1))
    g_joints = g_both[:, :joints.shape[1]]

    # Max-mixture pose prior: min_k 0.5 |(x - mu_k) L_k|² - log c_k, every component in one product.
    n, k = pose.shape[0], c.prior_nlc.shape[0]
    zq = torch.addmm(c.prior_ml.reshape(1, -1), pose, c.prior_l, beta=-1).view(n, k, -1)  # x L_k - mu_k L_k
    nll = 0.5 * (zq * zq).sum(-1) + c.prior_nlc
    if k == 1:
        loss = loss + c.pose_w2 * nll.sum()
        g_pose = c.pose_w2 * (zq.view(n, -1) @ c.prior_l.t())
    else:
        best, arg = nll.min(1)
        loss = loss + c.pose_w2 * best.sum()
        g_pose = c.pose_w2 * chosen_component_grad(zq, arg, c.prior_l, grouped=pose.device.type == "cpu")

    # Bending: sum exp(2 sign angle) over elbows and knees.
    bend = torch.exp(pose.index_select(1, c.angle_index) * c.angle_scale)
    loss = loss + c.bend_w2 * bend.sum()
    g_pose.index_add_(1, c.angle_index, (c.bend_w2 * c.angle_scale) * bend)

    loss = loss + (c.shape_w * betas * betas).sum()
    g_betas = 2 * c.shape_w * betas

    if c.reach is not None and c.interp_w > 0:
        # Pair-major, rows last: (P, 3, N), so each op runs over contiguous rows and the sum over x, y, z
        # adds three rows (row-major (N, P, 3) took 2.5x as long at 4,000 rows).
        m = joints.shape[1]
        diff = (c.pair_map @ joints.permute(1, 2, 0).reshape(m, 3 * n)).view(-1, 3, n)  # sphere centre differences
        dist = torch.sqrt((diff * diff).sum(1) + 1e-12)  # (P, N)
        over = torch.relu(c.reach - dist)
        loss = loss + c.interp_w * (over * over).sum()
        g_diff = ((-2 * c.interp_w) * over / dist).unsqueeze(1) * diff
        g_joints += (c.pair_map.t() @ g_diff.view(-1, 3 * n)).view(m, 3, n).permute(2, 0, 1)
    if c.temporal_w.numel():
        acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
        loss = loss + (c.temporal_w * acc * acc).sum()
        g_acc = 2 * c.temporal_w * acc
        g_joints[2:] += g_acc
        g_joints[1:-1] -= 2 * g_acc
        g_joints[:-2] += g_acc
    return loss, g_joints, g_both[:, joints.shape[1]:], g_pose, g_betas


class StageTerms(torch.autograd.Function):
    """``apply(c, joints, extra, pose, betas)`` -> the scalar objective; gradients from ``loss_and_grads``."""

    @staticmethod
    def forward(ctx: Any, c: LossConstants, joints: Tensor, extra: Tensor, pose: Tensor, betas: Tensor) -> Tensor:
        loss, *grads = loss_and_grads(c, joints, extra, pose, betas)
        ctx.grads = grads
        return loss

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable: double backward raises
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        g_joints, g_extra, g_pose, g_betas = ctx.grads
        return None, g_joints * grad, g_extra * grad, g_pose * grad, g_betas * grad
