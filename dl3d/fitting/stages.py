"""The batched SMPLify objective and its Adam stages (internal to ``dl3d.fitting.smplify``).

Between stages a row's rigid placement is kept as a rotation matrix ``rot`` and the root joint's
camera-frame position ``pelvis`` (what the camera stage and interpolation work with). Within a
stage the body model itself places the body: SMPL's ``global_orient`` (axis-angle, re-extracted from
``rot`` at each stage start, so its angle is at most pi and far from the 2 pi singularity) and
``transl = pelvis - rest_pelvis(betas)``; the kernel then returns camera-frame points directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from pytorch3d.transforms import axis_angle_to_matrix, matrix_to_axis_angle
from torch import Tensor, nn

from dl3d.fitting.adam import FusedAdam
from dl3d.fitting.fused_loss import LossConstants, StageTerms, prior_factors
from dl3d.fitting.interpenetration import SphereBody
from dl3d.fitting.objective import MAX_RESIDUAL_SIGMAS, project_points, reprojection_term, second_difference_term
from dl3d.fitting.priors import ANGLE_PRIOR_INDICES, ANGLE_PRIOR_SIGNS, GmmPosePrior, angle_prior, shape_prior

__all__ = ["Params", "Problem", "StageWeights", "evaluate", "rank_within_track", "run_stage", "stage_loss", "to_smpl"]


@dataclass(frozen=True)
class StageWeights:
    """Weights of one stage. Priors are squared in the loss (SMPLify's residual convention)."""

    pose: float
    shape: float
    bending: float
    interpenetration: float
    temporal: float


@dataclass
class Problem:
    """What a stage fits, for rows sorted by (track, frame). Tensors on the fitting device, float32.

    xy: (N, J, 2) observed pixels (0 where missing); weight: (N, J) confidence x joint weight (0 =
    ignore; whole rows of degenerate frames are 0); focal: (N,); principal_point: (N, 2);
    beta_index: (N,) long row -> betas row; consecutive: (N - 2,) float, 1 where rows i-1, i, i+1
    are consecutive frames of one track;
    fmt_index: (J,) long keypoints in the kernel's 35-point smplx layout.
    """

    kernel: nn.Module
    prior: GmmPosePrior
    spheres: SphereBody | None
    xy: Tensor
    weight: Tensor
    focal: Tensor
    principal_point: Tensor
    beta_index: Tensor
    consecutive: Tensor
    fmt_index: Tensor
    sigma: float
    data_weight: float

    def subset(self, rows: Tensor, consecutive: Tensor) -> "Problem":
        """The problem restricted to ``rows`` (betas rows unchanged), with a new ``consecutive``."""
        return replace(self, xy=self.xy[rows], weight=self.weight[rows], focal=self.focal[rows],
                       principal_point=self.principal_point[rows], beta_index=self.beta_index[rows],
                       consecutive=consecutive)


@dataclass
class Params:
    """Per-row state between stages: rot_base (N, 3, 3) root rotation, pelvis (N, 3) root joint,
    camera frame, metres, body_pose (N, 69) radians, betas (T, B) (one row per track when the
    shape is shared, else one per row)."""

    rot_base: Tensor
    pelvis: Tensor
    body_pose: Tensor
    betas: Tensor

    def subset(self, rows: Tensor) -> "Params":
        return Params(self.rot_base[rows], self.pelvis[rows], self.body_pose[rows], self.betas)


def evaluate(problem: Problem, betas: Tensor, global_orient: Tensor, body_pose: Tensor, transl: Tensor,
             w: StageWeights, reach: Tensor | None = None, outputs: bool = False) -> dict[str, Tensor]:
    """All terms of the objective, per row, plus (with ``outputs``) the posed results.

    betas: (T, B) indexed by ``problem.beta_index``; global_orient (N, 3), body_pose (N, 69)
    radians; transl (N, 3) metres, camera frame. reach: (N, P) sphere-pair radius sums
    (``SphereBody.pair_reach``), fixed within a stage; default computed from the current joints.
    Returns a dict with ``data`` (N,) px², ``pose``, ``bending``, ``shape``, ``interpenetration``
    (N,), ``temporal`` (N - 2,) for rows 1..N-2, and with ``outputs`` also ``projected`` (N, J, 2)
    px and ``joints`` (N, 24, 3) camera frame, metres.
    """
    rows_betas = betas[problem.beta_index]
    out = problem.kernel(rows_betas, global_orient, body_pose, transl)
    kp_cam = problem.kernel.smplx_layout(out).index_select(1, problem.fmt_index)
    projected = project_points(kp_cam, problem.focal, problem.principal_point)
    terms = {
        "data": problem.data_weight * reprojection_term(projected, problem.xy, problem.weight, problem.sigma),
        "pose": w.pose ** 2 * problem.prior(body_pose),
        "bending": w.bending ** 2 * angle_prior(body_pose),
        "shape": w.shape ** 2 * shape_prior(rows_betas),
    }
    if w.interpenetration > 0 and problem.spheres is not None:
        terms["interpenetration"] = w.interpenetration * problem.spheres(out.joints, reach)
    else:
        terms["interpenetration"] = torch.zeros_like(terms["data"])
    if w.temporal > 0:
        terms["temporal"] = w.temporal * second_difference_term(out.joints, problem.consecutive)
    else:
        terms["temporal"] = terms["data"].new_zeros(0)
    if outputs:
        terms.update(projected=projected, joints=out.joints)
    return terms


def total_loss(terms: dict[str, Tensor]) -> Tensor:
    """Scalar objective: the sum of every term over rows."""
    return sum(terms[k].sum() for k in ("data", "pose", "bending", "shape", "interpenetration", "temporal"))


def rest_pelvis(problem: Problem, betas: Tensor) -> Tensor:
    """(T, B) betas -> (N, 3) rest position of each row's root joint, metres (no gradient)."""
    with torch.no_grad():
        if hasattr(problem.kernel, "rest_root"):  # SelectedPointsKernel: linear in betas, per betas row
            return problem.kernel.rest_root(betas)[problem.beta_index]
        b = betas[problem.beta_index]
        n = b.shape[0]
        return problem.kernel(b, b.new_zeros(n, 3), b.new_zeros(n, 69)).joints[:, 0]


def to_smpl(problem: Problem, params: Params) -> tuple[Tensor, Tensor]:
    """SMPL's ``global_orient`` (N, 3), angle <= pi, and ``transl`` (N, 3) of ``params``."""
    return matrix_to_axis_angle(params.rot_base), params.pelvis - rest_pelvis(problem, params.betas)


def _constants(problem: Problem, betas: Tensor, w: StageWeights, reach: Tensor | None) -> LossConstants:
    """What ``stage_loss`` needs that does not change within a stage (computed once per stage)."""
    dev, dtype = problem.xy.device, problem.xy.dtype
    prior = problem.prior
    prior_l, prior_ml = prior_factors(prior.means.to(problem.xy), prior.prec_chol.to(problem.xy))
    count = torch.bincount(problem.beta_index, minlength=betas.shape[0]).to(betas.dtype)[:, None]
    spheres = problem.spheres
    if hasattr(problem.kernel, "smplx_layout_index"):  # keypoints gathered from [joints | points]
        kp_index = torch.tensor(problem.kernel.smplx_layout_index(), device=dev)[problem.fmt_index]
    else:  # any other body model: from [joints | smplx_layout]
        kp_index = 24 + problem.fmt_index
    return LossConstants(
        kp_index=kp_index, xy=problem.xy, data_w=(problem.data_weight * problem.sigma ** 2 * problem.weight ** 2)[..., None],
        focal=problem.focal, principal_point=problem.principal_point, sigma2=problem.sigma ** 2,
        bound=MAX_RESIDUAL_SIGMAS * problem.sigma,  # as gmof: no overflow to inf, then NaN
        prior_l=prior_l, prior_ml=prior_ml, prior_nlc=prior.neg_log_c.to(problem.xy), pose_w2=w.pose ** 2,
        angle_index=torch.tensor(ANGLE_PRIOR_INDICES, device=dev),
        angle_scale=2 * torch.tensor(ANGLE_PRIOR_SIGNS, device=dev, dtype=dtype),  # exp(s a)² = exp(2 s a)
        bend_w2=w.bending ** 2, shape_w=w.shape ** 2 * count,  # the shape prior counts once per row
        interp_w=w.interpenetration if spheres is not None else 0.0,
        pair_map=spheres.pair_map.to(problem.xy) if spheres is not None else None,
        reach=reach.t().contiguous() if reach is not None else None,
        temporal_w=(w.temporal * problem.consecutive)[:, None, None] if w.temporal > 0 else problem.xy.new_zeros(0),
    )


def stage_loss(problem: Problem, c: LossConstants, betas: Tensor, global_orient: Tensor, body_pose: Tensor,
               transl: Tensor) -> Tensor:
    """The scalar objective of ``total_loss(evaluate(...))``: the body model, then every term and its
    gradient as one autograd node (``fused_loss.StageTerms``; it runs every Adam step, and at a few
    hundred rows per-op overhead is most of the cost). ``c.reach`` None: radii from the current joints."""
    kernel = problem.kernel
    out = kernel(betas[problem.beta_index], global_orient, body_pose, transl)
    extra = out.points if hasattr(kernel, "smplx_layout_index") else kernel.smplx_layout(out)
    if c.reach is None and c.interp_w > 0:
        c = replace(c, reach=problem.spheres.pair_reach(out.joints).t().contiguous())
    return StageTerms.apply(c, out.joints, extra, body_pose, betas)


def run_stage(problem: Problem, params: Params, w: StageWeights, iters: int, lr: float,
              fit_shape: bool = True, stats: dict[str, Any] | None = None) -> Params:
    """Adam on every row at once for ``iters`` steps; returns the updated (detached) parameters.

    The step size decays linearly from ``lr`` to ``lr / 10`` over the stage.
    """
    if iters <= 0:
        return params
    start = time.perf_counter()
    go0, transl0 = to_smpl(problem, params)
    go = go0.detach().clone().requires_grad_(True)
    transl = transl0.detach().clone().requires_grad_(True)
    pose = params.body_pose.detach().clone().requires_grad_(True)
    betas = params.betas.detach().clone().requires_grad_(fit_shape)
    opt = FusedAdam([go, transl, pose] + ([betas] if fit_shape else []), lr=lr)
    reach = None
    if w.interpenetration > 0 and problem.spheres is not None:
        with torch.no_grad():  # bone lengths, hence sphere radii, hardly change within a stage
            joints = problem.kernel(betas[problem.beta_index], go, pose, transl).joints
            reach = problem.spheres.pair_reach(joints)
    consts = _constants(problem, betas, w, reach)
    for it in range(iters):
        opt.lr = lr * (1.0 - 0.9 * it / max(iters - 1, 1))
        opt.zero_grad()
        stage_loss(problem, consts, betas, go, pose, transl).backward()
        for p in opt.params:  # a row gone non-finite must not poison its track's shared
            p.grad.nan_to_num_(0.0, 0.0, 0.0)  # shape or its neighbours (temporal term): its NaN gradients are 0
        opt.step()
    with torch.no_grad():
        result = Params(axis_angle_to_matrix(go), transl + rest_pelvis(problem, betas), pose.detach(), betas.detach())
    if stats is not None:
        stats["row_iterations"] = stats.get("row_iterations", 0) + iters * pose.shape[0]
        stats["stage_seconds"] = stats.get("stage_seconds", 0.0) + time.perf_counter() - start
    return result


def rank_within_track(track: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... along each track of rows sorted by track (the keyframe stage's frame number)."""
    rank = np.zeros(len(track), dtype=np.int64)
    if len(track):
        starts = np.r_[0, np.flatnonzero(np.diff(track)) + 1]
        lengths = np.diff(np.r_[starts, len(track)])
        rank = np.arange(len(track)) - np.repeat(starts, lengths)
    return rank
