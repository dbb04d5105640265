"""The per-step scalar objective (one autograd node, hand-written gradient) equals autograd through
the per-row terms it is a fast rewrite of: value and gradient, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dl3d.body.joints_kernel import PointsOutput, build_points_kernel
from dl3d.fitting.interpenetration import sphere_body
from dl3d.fitting.priors import GmmPosePrior, builtin_pose_prior
from dl3d.fitting.stages import Problem, StageWeights, _constants, evaluate, stage_loss, total_loss
from dl3d.fitting.tracks import consecutive_mask
from dl3d.keypoints import FORMATS
from dl3d.synthetic.smpl_video import KeypointVideoSpec, make_keypoint_video, stack_videos


def _gmm3() -> GmmPosePrior:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 69, 69)) / 10
    return GmmPosePrior(rng.normal(0, 0.2, (3, 69)), 0.05 * (a @ a.transpose(0, 2, 1) + np.eye(69)), [0.2, 0.3, 0.5])


class _AutogradKernel(nn.Module):
    """The kernel's plain-autograd path behind the generic body-model interface (forward and
    smplx_layout only, as a wrapper around smplx's SMPL would offer)."""

    def __init__(self, kernel) -> None:
        super().__init__()
        self.kernel, self.num_betas = kernel, kernel.num_betas

    def forward(self, betas, global_orient, body_pose, transl=None) -> PointsOutput:
        pose = torch.cat([global_orient, body_pose], 1).view(-1, 24, 3)
        return PointsOutput(*self.kernel.full.run(betas, pose, transl))

    def smplx_layout(self, out: PointsOutput) -> torch.Tensor:
        return self.kernel.smplx_layout(out)


def _problem(kernel, prior, dtype, sigma=50.0):
    b = stack_videos([make_keypoint_video(getattr(kernel, "kernel", kernel), KeypointVideoSpec(frames=6, seed=s))
                      for s in (0, 1)])
    t = lambda x: torch.as_tensor(x, dtype=dtype)  # noqa: E731
    xy = t(b["keypoints"][..., :2])
    xy[0, 3] = 1e9  # a corrupt detection: its residual is clamped (no gradient), as gmof does
    problem = Problem(kernel=kernel, prior=prior.to(dtype), spheres=sphere_body(scale=2.0), xy=xy,
                      weight=t(b["keypoints"][..., 2]), focal=t(b["focal"]), principal_point=t(b["principal_point"]),
                      beta_index=torch.as_tensor(b["track_index"]),
                      consecutive=t(consecutive_mask(b["track_index"], b["frame"])),
                      fmt_index=torch.as_tensor(FORMATS["body25"].smpl_index), sigma=sigma, data_weight=2.0)
    g = torch.Generator().manual_seed(0)
    params = [0.5 * torch.randn(2, 10, generator=g, dtype=dtype), t(b["global_orient"]),
              t(b["body_pose"]) + 0.3 * torch.randn(12, 69, generator=g, dtype=dtype), t(b["transl"])]
    params[3][5, 2] = 0.005  # one body at the camera: its depth is clamped in the projection
    return problem, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prior", [builtin_pose_prior(), _gmm3()], ids=["one_component", "three_components"])
@pytest.mark.parametrize("temporal, generic", [(1e3, False), (0.0, False), (1e3, True)])
def test_stage_loss_matches_evaluate(body_arrays, prior, dtype, temporal, generic):
    kernel = build_points_kernel(body_arrays, dtype=dtype)
    kernel = _AutogradKernel(kernel) if generic else kernel
    problem, params = _problem(kernel, prior, dtype)
    w = StageWeights(pose=4.0, shape=3.0, bending=5.0, interpenetration=1e4, temporal=temporal)

    def value_and_grads(fn):
        leaves = [p.clone().requires_grad_() for p in params]
        loss = fn(*leaves)
        return loss.detach(), torch.autograd.grad(loss, leaves)

    reference, ref_grads = value_and_grads(lambda *p: total_loss(evaluate(problem, *p, w)))
    fast, grads = value_and_grads(lambda *p: stage_loss(problem, _constants(problem, p[0], w, None), *p))
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(fast, reference, rtol=rtol, atol=0)
    for name, g, r in zip(("betas", "global_orient", "body_pose", "transl"), grads, ref_grads):
        scale = r.abs().max()
        assert scale > 0, name
        assert (g - r).abs().max() <= 10 * rtol * scale, f"{name}: {((g - r).abs().max() / scale).item():.2e}"
    terms = evaluate(problem, *params, w)
    assert terms["interpenetration"].sum() > 0  # every term is exercised
    assert (terms["temporal"].sum() > 0) == (temporal > 0)
    if prior.num_components > 1:  # rows pick different mixture components
        picked = problem.prior.component_nll(params[2]).argmin(1)
        assert len(picked.unique()) > 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prior_gradient_grouped_by_component_equals_the_dense_product(dtype):
    """The CPU form (rows grouped by their mixture component, one D x D product per group) and the form other
    devices run (one-hot mask, one product over every component) give the same gradient, empty groups and
    a batch of no rows included."""
    from dl3d.fitting.fused_loss import chosen_component_grad

    g = torch.Generator().manual_seed(3)
    k, d, n = 8, 69, 300
    prior_l = torch.randn(d, k * d, generator=g, dtype=dtype)
    zq = torch.randn(n, k, d, generator=g, dtype=dtype)
    arg = torch.randint(0, k - 2, (n,), generator=g)  # the last two components chosen by no row
    grouped = chosen_component_grad(zq, arg, prior_l, grouped=True)
    dense = chosen_component_grad(zq, arg, prior_l, grouped=False)
    explicit = torch.stack([zq[i, arg[i]] @ prior_l[:, arg[i] * d:(arg[i] + 1) * d].t() for i in range(n)])
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(grouped, explicit, rtol=rtol, atol=rtol * explicit.abs().max().item())
    torch.testing.assert_close(dense, explicit, rtol=rtol, atol=rtol * explicit.abs().max().item())
    assert chosen_component_grad(zq[:0], arg[:0], prior_l, grouped=True).shape == (0, d)
